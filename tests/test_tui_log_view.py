"""The full-screen log view: `LogTail` on real files (growth, partial lines, truncation,
rotation, a missing file, a huge one), and the screen under the Pilot while a real log file is
appended to by another thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.app import App

from lab.config import RunConfig
from lab.queue import JobQueue
from tests.tui_runs import aio, until, write_study
from tui.app import make_app
from tui.logtail import LogTail
from tui.screens.log_view import LogScreen, LogSource
from tui.screens.main import MainScreen
from tui.widgets.log_pane import CURRENT, MATCH, LogPane


# ---- LogTail ------------------------------------------------------------------------------------
def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _rotate(path: Path, data: bytes) -> None:
    path.rename(path.with_suffix(".1"))  # what logrotate does, then the writer starts anew
    path.write_bytes(data)


@pytest.mark.parametrize(("steps", "expected"), [
    # (what happens to the file before each read) -> (lines, reset, why) of each read
    pytest.param([b"a\nb\n", b"c\n"], [(["a", "b"], True, ""), (["c"], False, "")],
                 id="growth: only the new lines"),
    pytest.param([b"par", b"tial\nnext"], [([], True, ""), (["partial"], False, "")],
                 id="a line is shown once it ends"),
    pytest.param([b"caf\xc3", b"\xa9\n"], [([], True, ""), (["caf\u00e9"], False, "")],
                 id="a character split between writes"),
    pytest.param([b" 10%\r 50%\r100%\n", b"x\r\n"], [(["100%"], True, ""), (["x"], False, "")],
                 id="a progress bar redrawn in place"),
    pytest.param([b"\x1b[31mred\x1b[0m \x1b]0;title\x07ok\tend\n"],
                 [(["red ok  end"], True, "")], id="colour codes and tabs"),
])
def test_tail_reads_what_was_appended(tmp_path: Path, steps: list[bytes],
                                      expected: list[tuple[list[str], bool, str]]) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"")
    tail = LogTail(path)
    for data, (lines, reset, why) in zip(steps, expected, strict=True):
        _append(path, data)
        change = tail.read()
        assert (change.lines, change.reset, change.why) == (lines, reset, why)


@pytest.mark.parametrize("change_file", [
    pytest.param(lambda p: p.write_bytes(b"fresh\n"), id="truncated"),
    pytest.param(lambda p: _rotate(p, b"fresh\n"), id="replaced"),
])
def test_a_truncated_or_replaced_log_is_read_again(tmp_path: Path,
                                                   change_file: Callable[[Path], None]) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"old 1\nold 2\nold 3\n")
    tail = LogTail(path)
    assert tail.read().lines == ["old 1", "old 2", "old 3"]
    change_file(path)
    change = tail.read()
    assert change.reset and change.lines == ["fresh"]
    assert change.why in ("truncated", "replaced")
    _append(path, b"more\n")
    assert (tail.read().lines, tail.read().lines) == (["more"], [])


def test_a_missing_log_is_said_then_followed(tmp_path: Path) -> None:
    path = tmp_path / "jobs" / "7.log"
    tail = LogTail(path)
    first, again = tail.read(), tail.read()
    assert first.missing and first.reset and again.missing and not again.reset
    path.parent.mkdir()
    path.write_bytes(b"started\n")
    change = tail.read()
    assert not change.missing and change.reset and change.lines == ["started"]
    path.unlink()
    gone = tail.read()
    assert gone.missing and gone.reset and gone.why == "missing" and gone.lines == []


def test_events_are_formatted_one_row_a_line(tmp_path: Path) -> None:
    """A run's metrics.jsonl as the Log tab shows it; a start event with notes takes a row per
    note, and a torn line is shown as it is."""
    from tui.screens.log_view import _event

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "start", "epochs": 2, "notes": ["no GPU: on the CPU"]}\n'
                    '{"event": "epoch", "epoch": 1, "val_acc": 0.5}\n{"event": "ep\n')
    lines = LogTail(path, fmt=_event).read().lines
    assert len(lines) == 4 and lines[0].startswith("start ") and "note: no GPU" in lines[1]
    assert lines[2].startswith("epoch   1") and lines[3] == '{"event": "ep'


def test_a_huge_log_is_read_from_its_tail(tmp_path: Path) -> None:
    """A 6 MB log with a 256 KB budget: the first read holds only whole lines from the end,
    and says how much it left out; a burst larger than the budget is cut the same way."""
    path = tmp_path / "big.log"
    line = lambda i: b"line %07d " % i + b"x" * 50 + b"\n"  # noqa: E731 - 64 bytes a line
    path.write_bytes(b"".join(line(i) for i in range(100_000)))
    size = path.stat().st_size
    budget = 256 * 1024
    tail = LogTail(path, max_bytes=budget)
    change = tail.read()
    assert change.lines[-1].startswith("line 0099999 ")
    assert len(change.lines) <= budget // 64
    assert all(text.startswith("line ") and len(text) == 63 for text in change.lines)
    first = int(change.lines[0].split()[1])
    assert change.skipped == first * 64 == size - len(change.lines) * 64
    _append(path, b"".join(line(i) for i in range(100_000, 110_000)))  # 640 KB at once
    burst = tail.read()
    assert not burst.reset and burst.skipped > 0 and burst.lines[-1].startswith("line 0109999")
    assert int(burst.lines[0].split()[1]) * 64 - size == burst.skipped


# ---- the screen ---------------------------------------------------------------------------------
class LogApp(App[None]):
    """The log screen alone, on a file."""

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__()
        self.path, self.options = path, options

    def on_mount(self) -> None:
        self.push_screen(LogScreen(LogSource(self.path, "job #1 output"),
                                   **{"poll_s": 0.2, **self.options}))


def rows(pane: LogPane) -> list[str]:
    """The pane's rows as drawn."""
    return [pane.render_line(y).text.rstrip()
            for y in range(pane.scrollable_content_region.height)]


def styled(pane: LogPane, style: Any) -> list[str]:
    return [seg.text for y in range(pane.scrollable_content_region.height)
            for seg in pane.render_line(y)
            if seg.style is not None and seg.style.bgcolor == style.bgcolor]


def status(app: App) -> str:
    return str(app.screen.query_one("#log-status").render())


def title(app: App) -> str:
    return str(app.screen.query_one("#log-title").render())


def writer(path: Path, first: int, count: int, pause: float = 0.005) -> threading.Thread:
    """Another process's log output: lines appended one write at a time."""
    def write() -> None:
        for i in range(first, first + count):
            _append(path, f"step {i} loss {1 / (i + 1):.4f}\n".encode())
            time.sleep(pause)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@pytest.mark.slow  # seconds of Pilot keys and polls
@aio
async def test_follow_tails_the_log_until_the_user_scrolls_up(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_text("".join(f"step {i} loss {1 / (i + 1):.4f}\n" for i in range(50)))
    app = LogApp(path)
    async with app.run_test(size=(80, 20)) as pilot:
        pane = app.screen.query_one(LogPane)
        thread = writer(path, 50, 150)
        await until(pilot, lambda: rows(pane)[-1].startswith("step 199 "))  # followed it
        thread.join()
        assert pane.follow and "following" in status(app)
        await pilot.press("pageup")
        assert not pane.follow and "follow off" in status(app)
        top = rows(pane)[0]
        writer(path, 200, 30).join()
        await until(pilot, lambda: len(pane.lines) == 230)
        await pilot.pause(0.1)
        assert rows(pane)[0] == top  # the view stayed where the user put it
        await pilot.press("F")
        await until(pilot, lambda: rows(pane)[-1].startswith("step 229 "))
        assert pane.follow
        await pilot.press("up", "end")
        assert pane.follow
        writer(path, 230, 5).join()
        await until(pilot, lambda: rows(pane)[-1].startswith("step 234 "))


@pytest.mark.slow  # seconds of Pilot keys and polls
@aio
async def test_search_highlights_steps_through_matches_and_says_no_match(
        tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    lines = [f"line {i}" + (" NaN loss" if i in (10, 14, 70) else " ok") for i in range(100)]
    path.write_text("\n".join(lines) + "\n")
    app = LogApp(path)
    async with app.run_test(size=(80, 20)) as pilot:
        pane = app.screen.query_one(LogPane)
        await until(pilot, lambda: len(pane.lines) == 100)
        await pilot.press("home", "slash", *"nan", "enter")  # lower case: any case
        await pilot.pause(0.1)
        assert "match 1/3 for 'nan'" in status(app) and not pane.follow
        assert any(r.startswith("line 10 NaN") for r in rows(pane))
        assert styled(pane, CURRENT) == styled(pane, MATCH) == ["NaN"]  # line 14's is in view
        await pilot.press("n")
        await pilot.pause(0.1)
        assert "match 2/3" in status(app) and any(r.startswith("line 14 ") for r in rows(pane))
        await pilot.press("N", "N")  # back past the first: round to the last
        await pilot.pause(0.1)
        assert "match 3/3" in status(app) and any(r.startswith("line 70 ") for r in rows(pane))
        assert styled(pane, CURRENT) == ["NaN"] and styled(pane, MATCH) == []
        await pilot.press("slash", *"NAN", "enter")  # an upper-case letter: exact case
        await pilot.pause(0.1)
        assert "no match for 'NAN'" in status(app) and styled(pane, MATCH) == []
        await pilot.press("slash", *"ok", "escape")  # escape closes the search, not the screen
        assert isinstance(app.screen, LogScreen) and "'NAN'" in status(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, LogScreen)


@aio
async def test_wrap_shows_long_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    long = "".join(f"{i:03d}," for i in range(60))  # 240 characters
    path.write_text(f"short\n{long}\nlast\n")
    app = LogApp(path)
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.screen.query_one(LogPane)
        await until(pilot, lambda: len(pane.lines) == 3)
        assert pane.virtual_size.height == 3 and len(rows(pane)[1]) < len(long)
        await pilot.press("w")
        await pilot.pause(0.1)
        width = pane.scrollable_content_region.width
        shown = rows(pane)
        pieces = -(-len(long) // width)
        assert pane.virtual_size.height == 2 + pieces and "wrap on" in status(app)
        assert "".join(shown[1:1 + pieces]) == long and shown[1 + pieces] == "last"
        await pilot.press("w")
        await pilot.pause(0.1)
        assert pane.virtual_size.height == 3


@aio
async def test_truncation_rotation_and_a_missing_log_on_screen(tmp_path: Path) -> None:
    path = tmp_path / "jobs" / "3.log"
    app = LogApp(path)
    async with app.run_test(size=(80, 20)) as pilot:
        pane = app.screen.query_one(LogPane)
        await until(pilot, lambda: "no such file yet" in title(app))
        path.parent.mkdir()
        path.write_text("one\ntwo\n")
        await until(pilot, lambda: pane.lines == ["one", "two"])
        assert "no such file" not in title(app)
        path.write_text("again\n")  # truncated (a shorter file under the same name)
        await until(pilot, lambda: pane.lines == ["again"])
        _rotate(path, b"rotated\n")
        await until(pilot, lambda: pane.lines == ["rotated"])
        assert any("reading it again from the start" in n.message
                   for n in app._notifications)


@pytest.mark.slow  # seconds of Pilot keys and polls
@aio
async def test_a_huge_log_on_screen_shows_its_end_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with open(path, "wb") as fh:
        for block in range(40):  # 4 MB
            fh.write(b"".join(b"row %06d " % (block * 1000 + i) + b"." * 90 + b"\n"
                              for i in range(1000)))
    app = LogApp(path, max_bytes=128 * 1024)
    async with app.run_test(size=(80, 20)) as pilot:
        pane = app.screen.query_one(LogPane)
        await until(pilot, lambda: pane.lines)
        assert len(pane.lines) <= 128 * 1024 // 101
        assert "not read: only the end of a big log" in title(app)
        await until(pilot, lambda: rows(pane)[-1].startswith("row 039999 "))


@pytest.mark.slow  # seconds of Pilot keys and polls
@aio
async def test_l_opens_the_selected_rows_log_and_escape_returns(lab_dirs: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """A job's output file for a job, the events of a run started outside the queue."""
    runs = lab_dirs["runs"]
    runs.mkdir(parents=True)
    write_study(runs)
    with JobQueue.open(runs) as queue:
        [job] = queue.submit([RunConfig(dataset="digits", epochs=1)], priority=0)
    (runs / "jobs").mkdir(exist_ok=True)
    (runs / "jobs" / f"{job.id}.log").write_text("worker: picked up the job\n")
    app = make_app(runs, lab_dirs["data"], refresh_s=0.5, poll_s=0.25,
                   device_probe=lambda: [])
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.ready_rows is not None)
        main = app.screen
        assert isinstance(main, MainScreen)
        await until(pilot, lambda: main.row is not None and main.row.job_id == job.id)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen)
                    and app.screen.query_one(LogPane).lines == ["worker: picked up the job"])
        await pilot.press("escape")
        assert app.screen is main
        await pilot.press("down", "l")  # the newest bare run: its events, as the Log tab
        await until(pilot, lambda: isinstance(app.screen, LogScreen)
                    and app.screen.query_one(LogPane).lines)
        assert app.screen.query_one(LogPane).lines[0].startswith("start ")
        assert os.fspath(app.screen.source.path).endswith("metrics.jsonl")


@aio
async def test_the_pane_lets_the_oldest_lines_go_past_its_bound() -> None:
    """Memory stays bounded however long a log is followed: past `max_lines` (plus a tenth,
    so a drop is rare) the oldest lines go, their matches with them, and the count says so."""

    class PaneApp(App[None]):
        def compose(self) -> Any:
            yield LogPane(max_lines=100)

    app = PaneApp()
    async with app.run_test(size=(60, 12)) as pilot:
        pane = app.query_one(LogPane)
        pane.search("7")
        for start in range(0, 300, 30):
            pane.append([f"row {i}" for i in range(start, start + 30)])
        await pilot.pause(0.1)
        assert 100 <= len(pane.lines) <= 110 and pane.lines[-1] == "row 299"
        assert pane.dropped + len(pane.lines) == 300
        assert pane.lines[0] == f"row {pane.dropped}"
        assert [pane.lines[i][s:e] for i, s, e in pane.matches] == ["7"] * sum(
            line.count("7") for line in pane.lines)
        assert rows(pane)[-1] == "row 299"  # still following
