#!/usr/bin/env bash
# Regenerate the README's console screenshots: the console renders itself headless at a given
# size and saves an SVG (Textual's own screenshot), on a real runs directory.
#
# The pictures in docs/ were taken on `lab demo` plus three queued jobs (a Level 1 that fails
# for want of ImageNet weights, queued past the submit check with --no-check; a 30-epoch
# Level 3; a Level 2) with a worker running them:
#   lab demo --runs-dir R
#   lab submit --level 1 --dataset digits --image-size 32 --priority 5 --no-check --runs-dir R
#   lab submit --level 3 --dataset digits --image-size 32 --epochs 30 --set log_every=2 --runs-dir R
#   lab submit --level 2 --dataset digits --image-size 32 --weights none --priority -1 --runs-dir R
#   lab worker --detach --gpus cpu --runs-dir R
# The key presses below pick rows of that list; with other runs, pick other keys.
set -euo pipefail
RUNS=${1:-runs}
OUT=$(cd "$(dirname "$0")" && pwd)
shot() { lab tui --runs-dir "$RUNS" --screenshot "$OUT/$1.svg" --size "$2" --press "$3" "${@:4}"; }

shot console-main      120x40 down                       # the running job: curves, progress
shot console-80x24      80x24 down
shot console-light     120x40 down --theme textual-light
shot console-overlay   120x40 down,down,down,down,down,space,down,space,down,space,7
shot console-compare   120x40 m
shot console-new-job   100x30 n
shot console-per-class 100x30 down,down,down,down,down,2
shot console-confusion 100x30 down,down,down,down,down,3
