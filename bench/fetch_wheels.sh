#!/usr/bin/env bash
# Fetch what bench/gpu_check.sh carries to a lent GPU machine, which has no network:
#   bench/wheels/  the packages lab needs that the GPU image lacks (pure Python, no deps resolved:
#                  the image already holds torch, torchvision, rich, typer, pygments,
#                  markdown-it-py, typing-extensions, opencv-python-headless, tqdm, pytest, ...)
#   bench/carry/   the real CIFAR-10 JPEG copy from ../shared/data (18.6 MB)
# Both folders are git-ignored; together they must stay well under the device tool's 64 MiB.
# Versions are the ones the project's suite runs against here.
set -euo pipefail
cd "$(dirname "$0")/.."

wheels=bench/wheels
carry=bench/carry
rm -rf "$wheels" && mkdir -p "$wheels" "$carry"

# Wheels straight from the registry (py3-none-*: any Python 3; plotext's is tagged manylinux x86-64).
pip download --quiet --no-deps --only-binary=:all: -d "$wheels" \
    textual==8.2.8 textual-image==0.12.0 plotext==6.1.0 ttach==0.0.3 \
    mdit-py-plugins==0.7.0 linkify-it-py==2.2.0 uc-micro-py==2.0.0 platformdirs==4.14.9
# grad-cam 1.5.x is published as a source archive only: build its (pure Python) wheel here.
pip wheel --quiet --no-deps -w "$wheels" grad-cam==1.5.7
rm -f "$wheels"/*.tar.gz

src=../shared/data/cifar10-jpeg.tar.xz
if [ -f "$src" ]; then
    cp "$src" "$carry/" && chmod u+w "$carry/$(basename "$src")"
else
    echo "warning: $src is missing; the import step of gpu_check will fail" >&2
fi

ls -l "$wheels" "$carry"
du -ch "$wheels" "$carry" | tail -n 1
