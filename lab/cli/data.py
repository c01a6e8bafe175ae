"""`lab data fetch | import | verify | info`: data sets into the cache, fully offline too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lab.cli.common import DataDirOpt, JsonOpt, data_dir, err, out, print_json

app = typer.Typer(no_args_is_help=True, help="Fetch, import, verify and list data sets.")


@app.command()
def fetch(
    url: Annotated[str | None, typer.Option(help="Mirror of cifar-10-python.tar.gz.",
                                            show_default=False)] = None,
    json_out: JsonOpt = False,
    data: DataDirOpt = None,
) -> None:
    """Download the official CIFAR-10 (md5-checked) and cache it."""
    from lab.data import fetch_cifar10
    from lab.data.download import CIFAR10_URL

    target = data_dir(data)
    shown = {"pct": -10}

    def progress(done: int, total: int) -> None:
        if total and not json_out:
            pct = int(100 * done / total)
            if pct >= shown["pct"] + 10:
                shown["pct"] = pct
                err.print(f"downloaded {done / 1e6:.1f} / {total / 1e6:.1f} MB ({pct}%)")

    manifest = fetch_cifar10(target, url=url or CIFAR10_URL, progress=progress)
    _report(manifest, target, json_out)


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="cifar-10-python.tar.gz, cifar-10-batches-py/, or "
                                         "an image tree: <class>/* or train|val|test/<class>/* "
                                         "(folder or archive).")],
    name: Annotated[str | None, typer.Option(help="Cache name (default: cifar10 for CIFAR-10, "
                                             "else the folder name).", show_default=False)] = None,
    size: Annotated[int | None, typer.Option(
        help="Fit every image to SIZE×SIZE: shorter side to SIZE, centre crop [default: the "
        "images' own size when they all agree, else their median shorter side, at most 256].",
        show_default=False)] = None,
    no_mirror: Annotated[bool, typer.Option(
        "--no-mirror", help="The classes are not mirror-symmetric (left/right, text): runs on "
        "this set never flip its images, in training or at test.")] = False,
    json_out: JsonOpt = False,
    data: DataDirOpt = None,
) -> None:
    """Import a data set from disk, offline, into the cache."""
    from lab.data import import_data
    from lab.errors import NotFoundError

    if not path.exists():
        raise NotFoundError(f"{path} does not exist")
    from lab.views.imports import ImportProgress

    target = data_dir(data)
    with ImportProgress(err, f"decoding {path.name}") as progress:
        manifest = import_data(path, target, name=name, size=size, mirror_safe=not no_mirror,
                               progress=None if json_out else progress)
    _report(manifest, target, json_out)


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="Cached data set name.")] = "cifar10",
    json_out: JsonOpt = False,
    data: DataDirOpt = None,
) -> None:
    """Re-read a cached data set and check it against its manifest."""
    from lab.data import verify_dataset

    report = verify_dataset(data_dir(data), name)
    if json_out:
        print_json(report)
    else:
        counts = report.get("counts", {})
        out.print(f"[green]ok[/] {name}: {counts.get('train')} train / "
                  f"{counts.get('test') or 0} test images; " + "; ".join(report.get("checks", [])))


@app.command()
def info(json_out: JsonOpt = False, data: DataDirOpt = None) -> None:
    """The cached data sets, where they came from, and whether they are the official release."""
    from lab.data import list_datasets

    target = data_dir(data)
    manifests = list_datasets(target)
    if json_out:
        print_json({"data_dir": str(target), "datasets": manifests})
        return
    table = Table(title=f"Data sets in {target}", title_justify="left")
    for col in ("name", "classes", "train", "test", "size", "official", "mirror", "source"):
        table.add_column(col)
    for m in manifests:  # strings from a manifest are plain text, never Rich markup
        table.add_row(Text(m["name"]), str(len(m["classes"])), _train_cell(m),
                      str(m["counts"].get("test") or "–"), "×".join(map(str, m["image_size"])),
                      "yes" if m.get("official") else "no", _mirror_cell(m),
                      Text(str(m.get("source"))))
    table.add_row("digits", "10", "1797", "– (split)", "32×32", "bundled", "no",
                  "scikit-learn")
    out.print(table)


def _train_cell(manifest: dict[str, Any]) -> str:
    """Training images, and the data set's own val/ images that the cache keeps with them."""
    train, val = manifest["counts"].get("train"), manifest.get("official_val") or 0
    return f"{train - val} + {val} val" if isinstance(train, int) and val else str(train)


def _mirror_cell(manifest: dict[str, Any]) -> str:
    """"yes", or "no" when declared not mirror-symmetric; "–" for an unreadable entry."""
    from lab.data.mirror import declared_mirror_safe

    if "error" in manifest:
        return "–"
    return "yes" if declared_mirror_safe(manifest) else "no"


def _report(manifest: dict[str, Any], target: Path, json_out: bool) -> None:
    if json_out:
        print_json(manifest)
        return
    from lab.views.imports import import_summary

    counts = manifest["counts"]
    summary = import_summary(manifest)
    where = f"[green]cached[/] {manifest['name']} in {escape(str(target / manifest['name']))}"
    if summary:
        out.print(where)
    else:
        out.print(f"{where}: {counts.get('train')} train / {counts.get('test') or 0} test "
                  f"images, {len(manifest['classes'])} classes, "
                  f"{'×'.join(map(str, manifest['image_size']))}")
    for line in summary:
        out.print(line, markup=False, highlight=False)
    if manifest.get("mirror_safe") is False:
        out.print("not mirror-safe: its runs never flip images (in training or as TTA)")
    reason = escape(str(manifest.get("official_reason") or ""))
    if manifest.get("official"):
        out.print(f"official release: {reason or 'checksum matches'}")
    else:
        out.print(f"[yellow]not the official release[/]: {reason}")
