"""What `lab tui` loads before its first screen: nothing that screen does not draw. The start-up
time itself is a figure, not a test: `python -m tui.bench --runs 3 --against ../main`."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tui.bench import read_and_answer
from tui.commands import plain_options
from tui.graphics import VT340_CELL, Graphics, parse_answers

ROOT = Path(__file__).resolve().parent.parent
# drawn later or elsewhere: the charts (plotext, on the first Curves drawing), the compare
# screen (m), the log view (l), Grad-CAM making (torch), the engine's training stack, the
# pictures (textual-image with numpy and PIL, when a picture first has a box on screen)
LATER = ("plotext", "lab.views.charts", "tui.screens.compare", "tui.screens.log_view",
         "torch", "torchvision", "sklearn", "lab.explain.gallery", "textual_image", "numpy",
         "PIL", "lab.data")
# the Typer tree: only for lines the console's own parser leaves to it (--help, mistakes)
TREE = ("typer", "pydantic", "lab.cli.tree", "lab.cli.jobs", "lab.cli.run", "tui.cli")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("module", ["tui.app", "tui.commands"])
def test_the_first_screen_imports_nothing_it_does_not_draw(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, env=_env(), cwd=ROOT).stdout.split())
    assert module in loaded
    assert sorted(m for m in LATER + TREE if m in loaded) == []


# `lab tui` up to the app's start, through the console script's function; the app's run
# prints what is loaded by then instead of taking the terminal
_UNTIL_RUN = """
import sys
import tui.app
def run(app, *args, **kwargs):
    print("RUN", app.runs_dir, app.data_dir, app.theme)
    print("LOADED", " ".join(sys.modules))
tui.app.LabApp.run = run
from lab.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("line", [
    [], ["--runs-dir", "{runs}"], ["--runs-dir={runs}", "--data-dir", "{data}"],
    ["--theme", "textual-light", "--data-dir={data}"],
])
def test_lab_tui_starts_without_the_typer_tree(tmp_path: Path, line: list[str]) -> None:
    env = {**_env(), "LAB_RUNS_DIR": str(tmp_path / "env-runs"),
           "LAB_DATA_DIR": str(tmp_path / "env-data")}
    args = [a.format(runs=tmp_path / "runs", data=tmp_path / "data") for a in line]
    done = subprocess.run([sys.executable, "-c", _UNTIL_RUN, "tui", *args], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    said = dict(ln.split(" ", 1) for ln in done.stdout.splitlines())
    runs, data, theme = said["RUN"].split()
    assert runs == str(tmp_path / ("runs" if "--runs-dir" in " ".join(line) else "env-runs"))
    assert data == str(tmp_path / ("data" if "--data-dir" in " ".join(line) else "env-data"))
    assert theme == ("textual-light" if "--theme" in line else "textual-dark")
    loaded = set(said["LOADED"].split())
    assert "tui.start" in loaded
    assert sorted(m for m in LATER + TREE if m in loaded) == []


@pytest.mark.parametrize(("line", "code", "says"), [
    (["--help"], 0, "--screenshot"),
    (["--bogus"], 2, "No such option: --bogus"),
    (["--runs-dir"], 2, "requires an argument"),
    (["--runs-dir", "x", "extra"], 2, "unexpected extra argument"),
])
def test_other_lab_tui_lines_are_typers(tmp_path: Path, line: list[str], code: int,
                                        says: str) -> None:
    """Help and mistakes are answered by the Typer tree, as for every other command."""
    done = subprocess.run([sys.executable, "-m", "lab", "tui", *line], env=_env(),
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == code
    assert says.lower() in (done.stdout + done.stderr).lower()


@pytest.mark.parametrize(("args", "options"), [
    ([], {}),
    (["--runs-dir", "r"], {"runs": "r"}),
    (["--runs-dir=r", "--data-dir", "d", "--theme=t"], {"runs": "r", "data": "d", "theme": "t"}),
    (["--runs-dir", "a", "--runs-dir", "b"], {"runs": "b"}),  # the last one, as Click does
    (["--help"], None), (["-h"], None), (["--screenshot", "x.svg"], None),
    (["--runs-dir"], None), (["--runs-dir="], None), (["--runs-dir", "--theme"], None),
    (["--runs-dir", ""], None), (["--", "--runs-dir", "r"], None), (["extra"], None),
    (["--runs"], None), (["--size", "80x24"], None),
])
def test_plain_options(args: list[str], options: dict[str, str] | None) -> None:
    assert plain_options(args) == options


@pytest.mark.parametrize(("answers", "kernel", "expected"), [
    (b"\x1b[?62;22c", None, Graphics("halfcell")),  # tmux: no Sixel, no Kitty answer
    (b"\x1b[6;20;10t\x1b[?62;22c", None, Graphics("halfcell", (10, 20))),
    (b"\x1b[6;16;8t\x1b[?62;4;22c", None, Graphics("sixel", (8, 16))),
    (b"\x1b_Gi=31;OK\x1b\\\x1b[6;18;9t\x1b[?62;c", None, Graphics("kitty", (9, 18))),
    (b"\x1b_Gi=31;ENOTSUPPORTED:x\x1b\\\x1b[?62c", (7, 14), Graphics("halfcell", (7, 14))),
    (b"\x1b[6;0;0t\x1b[?1;2c", None, Graphics("halfcell", VT340_CELL)),
    (b"", None, Graphics("halfcell", VT340_CELL)),  # nothing answered in time
])
def test_parse_answers(answers: bytes, kernel: tuple[int, int] | None,
                       expected: Graphics) -> None:
    assert parse_answers(answers, kernel) == expected


def _in_a_terminal(code: str, answers: dict[bytes, bytes], timeout: float = 60) -> bytes:
    """What `code` writes in a pseudo-terminal that answers `answers` (its queries), as tmux
    answers; the output must end with 'END'."""
    pid, master = pty.fork()
    if pid == 0:  # the child: the terminal is its stdin and stdout
        os.execve(sys.executable, [sys.executable, "-c", code], _env())
    seen = b""
    answered: dict[bytes, int] = {}
    try:
        while b"END" not in seen:
            ready = select.select([master], [], [], timeout)[0]
            assert ready, f"no answer in {timeout} s; so far {seen!r}"
            got = read_and_answer(master, seen, answered, answers)
            if got is None:
                break
            seen = got
    finally:
        os.close(master)
        os.waitpid(pid, 0)
    return seen


def test_probe_asks_once_and_never_waits_for_the_kitty_answer() -> None:
    """One write; the device-attributes answer ends it (tmux answers that and the cell size,
    never the Kitty query): the probe, given a minute, returns on the answers it got."""
    seen = _in_a_terminal(
        "from tui import graphics; print('GOT', graphics.probe(timeout=600)); print('END')",
        {b"\x1b[c": b"\x1b[?62;22c", b"\x1b[16t": b"\x1b[6;18;9t"})
    assert seen.count(b"\x1b_G") == 1 and seen.count(b"\x1b[c") == 1
    # 9x18, not the VT340's 10x20 the probe falls back to: the cell answer was read
    assert b"GOT Graphics(protocol='halfcell', cell=(9, 18))" in seen


@pytest.mark.parametrize(("protocol", "widget"), [
    ("sixel", "SixelImage"), ("kitty", "TGPImage"), ("halfcell", "HalfcellImage")])
def test_textual_image_takes_the_probe_and_asks_nothing(protocol: str, widget: str) -> None:
    """Imported later, with Textual reading the terminal, textual-image must not write its
    queries: it gets the probe's protocol and cell size."""
    code = ("import sys\nfrom tui import graphics\n"
            f"graphics._probed = graphics.Graphics({protocol!r}, (9, 18))\n"
            "sys.stdout.write('BEGIN'); sys.stdout.flush()\n"
            "cls = graphics.image_class()\n"
            "from textual_image import widget\n"
            "from textual_image._terminal import get_cell_size\n"
            f"print('GOT', cls is widget.{widget}, tuple(get_cell_size())); print('END')")
    seen = _in_a_terminal(code, {})
    after = seen.split(b"BEGIN", 1)[1]
    assert b"\x1b[c" not in after and b"\x1b_G" not in after and b"\x1b[16t" not in after
    assert b"GOT True (9, 18)" in after
