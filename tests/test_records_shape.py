"""Records of the wrong shape (issue 13, class 1): every record is checked against its schema
where it is read, so a hand-edited, foreign or hostile record is reported, never a crash.

A real run directory (made with `lab.runs.new_run`, records written as the engine writes them)
gets arbitrary JSON values in one record at a time, both values of any shape (Hypothesis's
`st.recursive`) and the valid record with one field replaced or removed. Every reader is then
called through the real entry point (`lab.cli.main`) or its library function, and must:
exit 0 or 4 (never 1: no internal error), print one `lab: error:` line naming the file when it
fails, show a corrupt run on its own row while the other runs read as usual, and leave every file
as it was. `lab resume` of a run whose record is corrupt must refuse before writing anything.

The same holds for a data set's manifest and the Grad-CAM indexes; the last tests are the
strict integer parse of job ids (`lab cancel ²`). The fast table covers the cases the issue
names; the property tests are in the slow tier."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lab.cli import main
from lab.levels import level_config
from lab.runs import RunDir, append_jsonl, atomic_write_json, new_run, summarize
from tests.cli_inprocess import one_click_command
from tests.fakes import write_image_tree
from tests.tui_runs import epoch_event, result

TINY = dict(dataset="digits", image_size=16, epochs=2, batch_size=64, device="cpu",
            cnn_channels=(8, 16, 16, 32), cnn_hidden=32, gradcam=0, log_every=5)
RUN_RECORDS = ("config.json", "status.json", "result.json")
GALLERY_RECORDS = ("gradcam/index.json", "gradcam/gradcam/index.json")
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# ---- the world: two finished runs (one the victim, with a gallery) and a cached data set ----
# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


def _png(path: Path, size: int = 8) -> None:
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)


def _finished_run(runs: Path, level: int, test_acc: float, gallery: bool) -> RunDir:
    config = level_config(level).replace(**TINY, **({"weights": "none"} if level < 3 else {}))
    run = new_run(runs, config)
    for epoch in (1, 2):
        append_jsonl(run.metrics_path, {"event": "step", "epoch": epoch, "step": 10 * epoch,
                                        "loss": 1.0 / epoch, "lr": 1e-4})
        append_jsonl(run.metrics_path, epoch_event(epoch, 2, test_acc, 10))
    append_jsonl(run.metrics_path, {"event": "test", "epoch": 2, "step": 20, "test_loss": 0.3,
                                    "test_acc": test_acc})
    atomic_write_json(run.result_path, {
        **result(run.id, level, test_acc, 2), "best_val_acc": test_acc, "device": "cpu",
        "timings": {"train_seconds": 1.0, "eval_seconds": 0.1, "total_seconds": 1.2},
        "throughput": {"train_images_per_s": 1000.0, "eval_images_per_s": 5000.0}})
    run.update_status(state="done", epoch=2, step=20, finished="2025-03-01T10:00:00+00:00",
                      error=None)
    if gallery:
        folder = run.path / "gradcam" / "gradcam"
        folder.mkdir(parents=True)
        _png(folder / "grid.png", 16)
        _png(folder / "3-wrong-1.png")
        item = {"file": "3-wrong-1.png", "test_index": 7, "true": "3", "predicted": "8",
                "confidence": 0.91, "correct": False, "method": "gradcam", "layer": "features",
                "caption": "true 3 · pred 8 · 91%"}
        index = {"name": "gradcam", "method": "gradcam", "layer": "features", "grid": "grid.png",
                 "created": "2025-03-01T10:00:00+00:00",
                 "filter": {"class": None, "wrong_only": False}, "items": [item]}
        atomic_write_json(folder / "index.json", index)
        atomic_write_json(run.path / "gradcam" / "index.json", {"galleries": [{
            "name": "gradcam", "method": "gradcam", "layer": "features",
            "grid": "gradcam/grid.png", "count": 1, "filter": index["filter"],
            "created": index["created"]}]})
    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from lab.data import import_data

    root = tmp_path_factory.mktemp("records")
    runs, data = root / "runs", root / "data"
    good = _finished_run(runs, 1, 0.9, gallery=False)
    victim = _finished_run(runs, 3, 0.8, gallery=True)  # newer: the latest run of level 3
    tree = root / "tree"
    write_image_tree(tree, classes=("cat", "dog"), per_class=4, per_class_test=2, size=8)
    import_data(tree, data, name="tiny")
    return {"root": root, "runs": runs, "data": data, "good": good, "victim": victim,
            "out": root / "report-out"}


def snapshot(world: dict[str, Any]) -> dict[str, str]:
    """Every file's SHA-256 (and every folder) under the runs and data directories."""
    files = {}
    for key in ("runs", "data"):
        for p in sorted(world[key].rglob("*")):
            files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return files


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    captured = capsys.readouterr()
    code = int(stopped.value.code or 0)
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
    if code:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lab: error: "), captured.err
    return code, captured.out, captured.err


# ---- JSON values: of any shape, and the valid record with one field replaced or removed -----
_DELETE = object()


def json_values() -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(10**40), 10**40)
               | st.floats() | st.text(max_size=12) | st.sampled_from(["[/]", "[bold", "done"]))
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = []
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


def _replace(original: Any, path: tuple, new: Any) -> Any:
    value = copy.deepcopy(original)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if new is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return value


def records_like(original: Any) -> st.SearchStrategy[Any]:
    mutated = st.tuples(st.sampled_from(_paths(original)),
                        json_values() | st.just(_DELETE)).map(lambda pv: _replace(original, *pv))
    return st.one_of(json_values(), mutated)


def _dump(value: Any) -> bytes:
    return json.dumps(value, indent=1).encode()  # NaN and Infinity as Python writes them


# ---- the readers, and what each must do --------------------------------------------------------
def _rows(out: str) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: r for r in json.loads(out)}


def check_run_readers(world: dict[str, Any], record: str, capsys: pytest.CaptureFixture[str],
                      expect_corrupt: bool | None = None, every: bool = True) -> bool:
    """Call the readers of runs on the world as it is; returns whether the victim read as
    corrupt (which `expect_corrupt`, when given, must match). Without `every`, the commands
    that read the same records the same way once more are left out (property tests)."""
    runs, good, victim = str(world["runs"]), world["good"].id, world["victim"].id
    name = Path(record).name
    code, _, err = cli(["show", victim, "--json", "--runs-dir", runs], capsys)
    assert code in (0, 4)
    corrupt = code == 4
    if corrupt:
        assert name in err
    if expect_corrupt is not None:
        assert corrupt == expect_corrupt, err
    assert cli(["show", victim, "--runs-dir", runs], capsys)[0] == code
    if every:
        assert cli(["show", good, "--runs-dir", runs], capsys)[0] == 0

    code, out, _ = cli(["runs", "--json", "--runs-dir", runs], capsys)
    rows = _rows(out)
    assert code == 0 and rows[good]["state"] == "done"
    assert (rows[victim]["state"] == "corrupt") == corrupt, rows[victim]
    if corrupt:
        assert name in rows[victim]["error"]
    assert cli(["runs", "--runs-dir", runs], capsys)[0] == 0
    assert (summarize(world["victim"])["state"] == "corrupt") == corrupt

    code, out, err = cli(["compare", victim, good, "--json", "--runs-dir", runs], capsys)
    assert code == 0 and good in _rows(out)
    assert (victim in _rows(out)) == (not corrupt)
    if corrupt:
        assert "left out" in err and name in err
    assert cli(["compare", victim, good, "--runs-dir", runs], capsys)[0] == 0
    if every:
        assert cli(["compare", victim, "--runs-dir", runs], capsys)[0] == (4 if corrupt else 0)
        code, out, _ = cli(["compare", "--json", "--runs-dir", runs], capsys)
        assert code == 0 and (not corrupt or victim not in _rows(out))
        assert cli(["compare", "--runs-dir", runs], capsys)[0] == 0

    from tui.detail import load_detail
    from tui.model import RowSource

    tui_rows = {r.run_id: r for r in RowSource(world["runs"]).load().rows}
    assert (tui_rows[victim].state == "corrupt") == corrupt
    detail = load_detail(world["runs"], tui_rows[victim])
    if name != "metrics.jsonl":  # torn or bad lines there are a note, not a corrupt run
        assert any(e.startswith(name) for e in detail.errors) == corrupt, detail.errors

    if corrupt:  # commands that write into the run, or beside it: refused, nothing written
        code, _, err = cli(["resume", victim, "--runs-dir", runs, "--data-dir",
                            str(world["data"])], capsys)
        assert code == 4 and name in err
        code, _, err = cli(["report", victim, "-o", str(world["out"]), "--runs-dir", runs],
                           capsys)
        assert code == 4 and name in err and not world["out"].exists()
    return corrupt


def _with_record(world: dict[str, Any], record: str, body: bytes) -> Path:
    path = world["victim"].path / record
    path.write_bytes(body)
    return path


# ---- the cases the issue names, and their neighbours (fast) ------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = b"9" * 5000
RUN_CASES: list[tuple[str, str, bytes, bool]] = [
    ("status a list", "status.json", b"[1, 2]", True),
    ("status a string", "status.json", b'"done"', True),
    ("status without a state", "status.json", b'{"epoch": 2}', True),
    ("status state a number", "status.json", b'{"state": 5}', True),
    ("status state unknown", "status.json", b'{"state": "exploded"}', True),
    ("status epoch of 5000 digits", "status.json", b'{"state": "done", "epoch": ' + HUGE + b"}",
     True),
    ("status pid beyond 32 bits", "status.json", b'{"state": "running", "pid": 1099511627776}',
     True),
    ("status nested 100,000 deep", "status.json", DEEP, True),
    ("status with a field nested 200 deep", "status.json",
     b'{"state": "done", "x": ' + b"[" * 200 + b"]" * 200 + b"}", True),
    ("status not UTF-8", "status.json", b'{"state": "\xff\xfe"}', True),
    ("status empty", "status.json", b"", True),
    ("status with a field of a newer lab", "status.json",
     b'{"state": "done", "epoch": 2, "gpu_hours": [1, {"a": null}]}', False),
    ("result a list", "result.json", b"[1, 2]", True),
    ("result null", "result.json", b"null", True),
    ("result test_acc a string", "result.json", None, True),  # filled in below
    ("result test_acc infinite", "result.json", None, True),
    ("result test_acc of 400 digits", "result.json", None, True),
    ("result per_class rows not objects", "result.json", None, True),
    ("result confusion not square", "result.json", None, True),
    ("result classes named as Rich markup", "result.json", None, False),
    ("result without timings or device", "result.json", None, False),
    ("result nested 100,000 deep", "result.json", DEEP, True),
    ("config a string", "config.json", b'"hello"', True),
    ("config an empty object", "config.json", b"{}", True),
    ("config epochs infinite", "config.json", None, True),
    ("config level a list", "config.json", None, True),
    ("config of 5000 digits", "config.json", HUGE, True),
    ("config dataset as Rich markup", "config.json", None, False),
]


def _edited(world: dict[str, Any], record: str, case: str) -> bytes:
    """The valid record with the change the case names."""
    value = json.loads((world["victim"].path / record).read_text())
    edits: dict[str, Any] = {
        "result test_acc a string": lambda v: v.update(test_acc="high"),
        "result test_acc infinite": lambda v: v.update(test_acc=float("inf")),
        "result test_acc of 400 digits": lambda v: v.update(test_acc=10**400),
        "result per_class rows not objects": lambda v: v.update(per_class=[1, 2]),
        "result confusion not square": lambda v: v.update(confusion=[[1, 2], [3]]),
        "result classes named as Rich markup": lambda v: v.update(
            classes=["[/]", "[bold", *v["classes"][2:]],
            per_class=[{**r, "class": c} for r, c in zip(
                v["per_class"], ["[/]", "[bold", *v["classes"][2:]], strict=True)],
            most_confused=[{**p, "true": "[/]", "predicted": "[red"}
                           for p in v["most_confused"]],
            device="[/]"),
        "result without timings or device": lambda v: [v.pop(k) for k in (
            "timings", "throughput", "device", "best_val_acc")],
        "config epochs infinite": lambda v: v.update(epochs=float("inf")),
        "config level a list": lambda v: v.update(level=[3]),
        "config dataset as Rich markup": lambda v: v.update(dataset="imagefolder:[/]x[bold"),
    }
    edits[case](value)
    return _dump(value)


# The fast tier takes a few of each record (every reader runs per case, about a second each);
# the full suite takes them all.
FAST_RUN_CASES = {"status a list", "status nested 100,000 deep", "status not UTF-8",
                  "result test_acc infinite", "result classes named as Rich markup",
                  "config epochs infinite", "config dataset as Rich markup"}


@pytest.mark.parametrize(("record", "body", "corrupt"), [
    pytest.param(*c[1:], id=c[0], marks=() if c[0] in FAST_RUN_CASES else pytest.mark.slow)
    for c in RUN_CASES])
def test_a_record_of_the_wrong_shape_marks_its_run_only(
        world: dict[str, Any], record: str, body: bytes | None, corrupt: bool,
        request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    path = world["victim"].path / record
    original = path.read_bytes()
    case = request.node.callspec.id
    try:
        _with_record(world, record, body if body is not None else _edited(world, record, case))
        before = snapshot(world)
        check_run_readers(world, record, capsys, expect_corrupt=corrupt)
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)
        shutil.rmtree(world["out"], ignore_errors=True)


def test_a_status_directory_or_unreadable_record(world: dict[str, Any],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Not a file at all: the listing goes on, the run shows the reason."""
    path = world["victim"].status_path
    original = path.read_bytes()
    path.unlink()
    path.mkdir()
    try:
        code, out, _ = cli(["runs", "--json", "--runs-dir", str(world["runs"])], capsys)
        assert code == 0 and _rows(out)[world["victim"].id]["state"] == "corrupt"
    finally:
        path.rmdir()
        path.write_bytes(original)


METRICS_CASES = [
    ("an epoch's val_acc a string", {"event": "epoch", "epoch": 3, "val_acc": "high"}),
    ("an epoch number of 400 digits", {"event": "epoch", "epoch": 10**400, "val_acc": 0.5}),
    ("a test accuracy of 400 digits", {"event": "test", "epoch": 2, "test_acc": 10**400}),
    ("a start event whose classes are a number", {"event": "start", "epoch": 0, "classes": 5}),
    ("a step without its epoch", {"event": "step", "step": 3, "loss": 0.1}),
    ("a line that is a list", [1, 2]),
    ("a line nested 200 deep", {"event": "epoch", "epoch": 1, "x": json.loads("[" * 200 +
                                                                              "]" * 200)}),
]


@pytest.mark.parametrize("line", [c[1] for c in METRICS_CASES], ids=[c[0] for c in METRICS_CASES])
def test_a_bad_metrics_line_is_skipped_and_the_run_still_reads(
        world: dict[str, Any], line: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = world["victim"].metrics_path
    original = path.read_bytes()
    try:
        with open(path, "ab") as fh:
            fh.write(json.dumps(line).encode() + b"\n")
        before = snapshot(world)
        corrupt = check_run_readers(world, "metrics.jsonl", capsys, expect_corrupt=False)
        assert not corrupt
        from tui.model import read_events

        assert read_events(path)[1] == 1  # counted as one unreadable line
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)


def test_resume_of_a_resumable_run_with_a_corrupt_status_writes_nothing(
        world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case: `lab resume` rewrote such a status to failed (or trained)."""
    runs = tmp_path / "runs"
    run = new_run(runs, level_config(3).replace(**TINY))
    for status in (b'{"state": 5}', b'{"state": "interrupted", "epoch": "two"}',
                   b'{"state": "interrupted", "pid": [1]}', b"[1, 2]"):
        run.status_path.write_bytes(status)
        before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
        code, _, err = cli(["resume", run.id, "--runs-dir", str(runs), "--data-dir",
                            str(world["data"])], capsys)
        assert code == 4 and "status.json" in err
        assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before


def _gallery_readers(world: dict[str, Any], capsys: pytest.CaptureFixture[str],
                     report: bool) -> bool:
    """Every reader of the Grad-CAM indexes; returns whether `lab gradcam show` refused."""
    runs, victim = str(world["runs"]), world["victim"].id
    code, _, err = cli(["gradcam", "show", victim, "--mode", "halfcell", "--runs-dir", runs],
                       capsys)
    assert code in (0, 3, 4), err
    from tui.detail import load_detail
    from tui.model import RowSource

    row = {r.run_id: r for r in RowSource(world["runs"]).load().rows}[victim]
    assert row.state == "done"  # the run itself is fine: only its gallery is damaged
    detail = load_detail(world["runs"], row)
    for gallery in detail.galleries:
        assert all(Path(item["path"]).parent == world["victim"].path / "gradcam" /
                   gallery["name"] for item in gallery["items"])
    if report:
        code, _, err = cli(["report", victim, "-o", str(world["out"]), "--runs-dir", runs],
                           capsys)
        assert code == 0, err
        shutil.rmtree(world["out"])
    return code == 4


GALLERY_CASES = [
    ("run index a list", "gradcam/index.json", b"[]", True),
    ("run index galleries of numbers", "gradcam/index.json", b'{"galleries": [1, 2]}', True),
    ("run index gallery named with a path", "gradcam/index.json",
     b'{"galleries": [{"name": "../../x", "method": "gradcam", "layer": "l", "grid": null, '
     b'"count": 0}]}', True),
    ("gallery items not objects", "gradcam/gradcam/index.json",
     b'{"name": "gradcam", "method": "gradcam", "layer": "l", "grid": "grid.png", '
     b'"items": [1]}', True),
    ("gallery item file climbing out", "gradcam/gradcam/index.json",
     b'{"name": "gradcam", "method": "gradcam", "layer": "l", "grid": "../../../x.png", '
     b'"items": []}', True),
    ("gallery index nested 100,000 deep", "gradcam/gradcam/index.json", DEEP, True),
]


@pytest.mark.parametrize(("record", "body", "refused"), [c[1:] for c in GALLERY_CASES],
                         ids=[c[0] for c in GALLERY_CASES])
def test_a_gallery_index_of_the_wrong_shape(world: dict[str, Any], record: str, body: bytes,
                                            refused: bool,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = world["victim"].path / record
    original = path.read_bytes()
    try:
        path.write_bytes(body)
        before = snapshot(world)
        assert _gallery_readers(world, capsys, report=False) == refused
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)


MANIFEST_CASES = [
    ("a list", lambda m: [m]),
    ("counts a list", lambda m: {**m, "counts": [3, 1]}),
    ("classes a string", lambda m: {**m, "classes": "cat,dog"}),
    ("no classes", lambda m: {**m, "classes": []}),
    ("image size of three numbers", lambda m: {**m, "image_size": [8, 8, 3]}),
    ("train count a string", lambda m: {**m, "counts": {"train": "8", "test": 4}}),
    ("source as Rich markup, otherwise fine", None),
]


def _manifest_readers(world: dict[str, Any], capsys: pytest.CaptureFixture[str],
                      corrupt: bool) -> None:
    data, runs = str(world["data"]), str(world["runs"])
    code, out, _ = cli(["data", "info", "--json", "--data-dir", data], capsys)
    entry = {d["name"]: d for d in json.loads(out)["datasets"]}["tiny"]
    assert code == 0 and ("error" in entry) == corrupt
    assert cli(["data", "info", "--data-dir", data], capsys)[0] == 0
    code, _, err = cli(["data", "verify", "tiny", "--data-dir", data], capsys)
    assert code == (4 if corrupt else 0) and (not corrupt or "manifest.json" in err)
    if corrupt:  # checked in the preflight: no run directory is made
        code, _, err = cli(["run", "--level", "3", "--dataset", "tiny", "--device", "cpu",
                            "--epochs", "1", "--image-size", "16", "--runs-dir", runs,
                            "--data-dir", data], capsys)
        assert code == 4 and "manifest.json" in err


@pytest.mark.parametrize("edit", [c[1] for c in MANIFEST_CASES],
                         ids=[c[0] for c in MANIFEST_CASES])
def test_a_manifest_of_the_wrong_shape(world: dict[str, Any], edit: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = world["data"] / "tiny" / "manifest.json"
    original = path.read_bytes()
    manifest = json.loads(original)
    try:
        if edit is None:
            path.write_bytes(_dump({**manifest, "source": "[/]x[bold", "official_reason": "[/]"}))
        else:
            path.write_bytes(_dump(edit(manifest)))
        before = snapshot(world)
        _manifest_readers(world, capsys, corrupt=edit is not None)
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)


def test_the_console_draws_record_strings_as_text(world: dict[str, Any]) -> None:
    """Well-formed records whose strings look like Rich markup (`[/]` closes nothing): the
    console's tabs and compare screen show them as they are."""
    from lab.views.compare import comparison
    from tests.tui_runs import plain
    from tui.detail import load_detail
    from tui.model import RowSource
    from tui.screens.compare import comparison_table
    from tui.widgets.record import config_renderable
    from tui.widgets.results import confused_pairs

    victim = world["victim"]
    saved = {p: p.read_bytes() for p in (victim.result_path, victim.status_path)}
    try:
        res = json.loads(victim.result_path.read_text())
        res.update(augmentation="[/]aug", dataset="[bold",
                   most_confused=[{**res["most_confused"][0], "true": "[/]", "predicted": "[x"}])
        victim.result_path.write_bytes(_dump(res))
        victim.status_path.write_bytes(_dump({**json.loads(saved[victim.status_path]),
                                              "state": "failed", "error": "bad [/] thing"}))
        row = {r.run_id: r for r in RowSource(world["runs"]).load().rows}[victim.id]
        detail = load_detail(world["runs"], row)
        assert detail.errors == [] and "bad [/] thing" in plain(config_renderable(detail))
        assert "[/]" in plain(confused_pairs(detail.result["most_confused"]))
        rows = comparison(world["runs"], [victim.id, world["good"].id])
        assert "[/]aug" in plain(comparison_table(rows, wide=True))
    finally:
        for path, body in saved.items():
            path.write_bytes(body)


# ---- job ids: a strict integer parse ------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["cancel", "²"], ["cancel", "9" * 5000], ["cancel", "#٣"], ["cancel", "1" * 19],
    ["retry", "²"], ["logs", "9" * 5000], ["watch", "#²"], ["cancel", "0"],
], ids=["superscript two", "5000 digits", "arabic-indic three", "19 digits", "retry ²",
        "logs 5000 digits", "watch #²", "zero"])
def test_a_job_id_that_is_not_a_plain_number(argv: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli([*argv, "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and "job id" in err and len(err) < 300, err
    assert list(tmp_path.iterdir()) == []  # no queue database made


# ---- property tests: arbitrary JSON in each record (slow tier) ---------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("record", RUN_RECORDS)
@PROPERTY
@given(data=st.data())
def test_any_json_in_a_run_record(world: dict[str, Any], record: str, data: st.DataObject,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = world["victim"].path / record
    original = path.read_bytes()
    value = data.draw(records_like(json.loads(original)), label=record)
    try:
        path.write_bytes(_dump(value))
        before = snapshot(world)
        check_run_readers(world, record, capsys, every=False)
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)
        shutil.rmtree(world["out"], ignore_errors=True)


@pytest.mark.slow
@PROPERTY
@given(data=st.data())
def test_any_json_lines_in_metrics(world: dict[str, Any], data: st.DataObject,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = world["victim"].metrics_path
    original = path.read_bytes()
    events = [json.loads(line) for line in original.splitlines()]
    lines = data.draw(st.lists(st.one_of(*(records_like(e) for e in events)), max_size=6))
    try:
        path.write_bytes(b"".join(json.dumps(v).encode() + b"\n" for v in lines))
        before = snapshot(world)
        assert not check_run_readers(world, "metrics.jsonl", capsys, every=False)
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)


@pytest.mark.slow
@pytest.mark.parametrize("record", GALLERY_RECORDS)
@settings(PROPERTY, max_examples=15)
@given(data=st.data())
def test_any_json_in_a_gallery_index(world: dict[str, Any], record: str, data: st.DataObject,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = world["victim"].path / record
    original = path.read_bytes()
    value = data.draw(records_like(json.loads(original)), label=record)
    try:
        path.write_bytes(_dump(value))
        before = snapshot(world)
        _gallery_readers(world, capsys, report=data.draw(st.integers(0, 5)) == 0)
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)
        shutil.rmtree(world["out"], ignore_errors=True)


@pytest.mark.slow
@PROPERTY
@given(data=st.data())
def test_any_json_in_a_manifest(world: dict[str, Any], data: st.DataObject,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from lab.data.store import read_manifest
    from lab.errors import DataError

    path = world["data"] / "tiny" / "manifest.json"
    original = path.read_bytes()
    value = data.draw(records_like(json.loads(original)), label="manifest")
    try:
        path.write_bytes(_dump(value))
        try:
            read_manifest(world["data"], "tiny")
            corrupt = False
        except DataError:
            corrupt = True
        before = snapshot(world)
        data_dir = str(world["data"])
        code, out, _ = cli(["data", "info", "--json", "--data-dir", data_dir], capsys)
        entry = {d["name"]: d for d in json.loads(out)["datasets"]}["tiny"]
        assert code == 0 and ("error" in entry) == corrupt
        assert cli(["data", "info", "--data-dir", data_dir], capsys)[0] == 0
        assert cli(["data", "verify", "tiny", "--data-dir", data_dir], capsys)[0] in (0, 4)
        if corrupt:
            _manifest_readers(world, capsys, corrupt=True)
        assert snapshot(world) == before
    finally:
        path.write_bytes(original)
