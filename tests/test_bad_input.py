"""Bad input, table-driven, through the real CLI entry point: each case gets one `lab: error:`
line (no traceback), its documented exit code, and leaves every file in the runs, data and
inputs directories byte for byte as it was (the test hashes them before and after).

The queue database is compared by its rows rather than its bytes: SQLite may rewrite pages and
its -shm index on a mere read without changing a record."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lab.core.models import CustomCNN
from lab.core.stopping import Stopped
from lab.errors import ExitCode
from lab.launch.run import start_run
from lab.launch.session import train_run as fit
from lab.levels import level_config
from lab.queue import JobQueue
from lab.runs import new_run
from tests.cli_inprocess import one_click_command, run_cli
from tests.fakes import (
    batch_pickle,
    cifar_arrays,
    cifar_files,
    pack,
    write_cifar_tarball,
    write_image_tree,
)
from tests.jobtools import env
from tests.readonly import drop_capabilities, make_read_only, make_writable

TINY = dict(dataset="digits", image_size=16, epochs=2, batch_size=64, device="cpu",
            cnn_channels=(8, 16, 16, 32), cnn_hidden=32, gradcam=0, log_every=5)
USAGE, NOT_FOUND, DATA, IO, BUSY = (ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.DATA,
                                    ExitCode.IO, ExitCode.BUSY)


def _stopped_run(runs: Path, data: Path, **changes):  # noqa: ANN003, ANN202
    config = level_config(3).replace(**{**TINY, **changes})
    run = new_run(runs, config)
    calls = iter(range(10**6))
    with pytest.raises(Stopped):
        fit(config, run, data, should_stop=lambda: next(calls) >= 25)
    return run


# `lab.cli.main` in this process with Typer's command tree built once per module, not once
# a call (measured: 50-80 ms of CPU a call, most of an in-process command's time)
_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Runs (done, interrupted, damaged), a queue with jobs, a data cache, and bad files."""
    root = tmp_path_factory.mktemp("world")
    runs, data, inputs = root / "runs", root / "data", root / "inputs"
    inputs.mkdir()
    data.mkdir()
    done, _ = start_run(level_config(3).replace(**TINY), runs, data)
    paused = _stopped_run(runs, data)
    foreign = _stopped_run(runs, data)
    other = _stopped_run(runs, data, cnn_channels=(16, 16, 32, 32))
    foreign.checkpoint_path.write_bytes(other.checkpoint_path.read_bytes())
    (foreign.path / "checkpoint.prev.pt").unlink()
    torn = _stopped_run(runs, data)
    for path in (torn.checkpoint_path, torn.path / "checkpoint.prev.pt"):
        path.write_bytes(path.read_bytes()[:1000])
    garbled = _stopped_run(runs, data)
    garbled.config_path.write_text("{ this is not json")
    bad_status = _stopped_run(runs, data)
    bad_status.status_path.write_text("[1, 2")
    with JobQueue.open(runs) as queue:
        queue.submit([level_config(3).replace(**TINY)])
    ids = {"done": done.id, "paused": paused.id, "foreign": foreign.id, "torn": torn.id,
           "garbled": garbled.id, "bad_status": bad_status.id}

    (inputs / "not_json.json").write_text("{ not json")
    (inputs / "a_list.json").write_text("[1, 2, 3]")
    (inputs / "unknown_key.json").write_text('{"level": 3, "learning_speed": 2}')
    (inputs / "junk.pt").write_bytes(b"\x00\x01 not a torch file" * 40)
    torch.save(CustomCNN(10, 32).state_dict(), inputs / "cnn_weights.pt")
    good = inputs / "cifar-10-python.tar.gz"
    write_cifar_tarball(good)
    blob = good.read_bytes()
    (inputs / "truncated.tar.gz").write_bytes(blob[: len(blob) // 2])
    (inputs / "corrupt.tar.gz").write_bytes(blob[:100] + b"\xff" * 4000 + blob[4100:])
    (inputs / "empty.tar.gz").write_bytes(b"")
    files = cifar_files(cifar_arrays())
    files["data_batch_1"] = batch_pickle(np.zeros((10, 100), np.uint8), [0] * 10)  # wrong shape
    with tarfile.open(inputs / "wrong_shape.tar.gz", "w:gz") as tf:
        for name, content in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    for name, member in [("traversal.tar", "../../escape.png"), ("absolute.tar", "/tmp/x.png")]:
        with tarfile.open(inputs / name, "w") as tf:
            info = tarfile.TarInfo(member)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"png"))
    tree = inputs / "tree_empty_class"
    write_image_tree(tree, classes=("cat", "dog"), per_class=3)
    (tree / "train" / "emu").mkdir()
    (tree / "test" / "emu").mkdir()
    tree_zip = inputs / "tree_src"
    write_image_tree(tree_zip, classes=("cat", "dog"), per_class=3)
    pack(tree_zip, inputs / "zip_slip.zip")
    import zipfile

    with zipfile.ZipFile(inputs / "zip_slip.zip", "a") as zf:
        zf.writestr("../outside.png", b"png")
    (inputs / "not_an_archive.tar.gz").write_text("hello")
    return {"runs": runs, "data": data, "inputs": inputs, **{k: Path(v) for k, v in ids.items()}}


# (name, argv, exit code, a phrase the one line must hold). {runs} {data} {in} {<run>} expand.
CASES: list[tuple[str, list[str], int, str]] = [
    # options of lab run
    ("unknown level", ["run", "--level", "7"], USAGE, "level"),
    ("level zero", ["run", "--level", "0"], USAGE, "level"),
    ("zero epochs", ["run", "--level", "3", "--epochs", "0"], USAGE, "epochs"),
    ("negative epochs", ["run", "--level", "3", "--epochs", "-2"], USAGE, "epochs"),
    ("epochs not a number", ["run", "--level", "3", "--epochs", "many"], USAGE, "epochs"),
    ("image too small", ["run", "--level", "3", "--image-size", "4"], USAGE, "image_size"),
    ("zero batch", ["run", "--level", "3", "--batch-size", "0"], USAGE, "batch_size"),
    ("negative lr", ["run", "--level", "3", "--lr", "-0.1"], USAGE, "lr"),
    ("lr not finite", ["run", "--level", "3", "--lr", "nan"], USAGE, "lr"),
    ("unknown precision", ["run", "--level", "3", "--precision", "fp8"], USAGE, "precision"),
    ("unknown device", ["run", "--level", "3", "--device", "tpu"], USAGE, "device"),
    ("missing cuda", ["run", "--level", "3", "--device", "cuda:3"], USAGE, "cuda"),
    ("unknown recipe", ["run", "--level", "3", "--recipe", "fancy"], USAGE, "recipe"),
    ("unknown option", ["run", "--level", "3", "--turbo"], USAGE, "--turbo"),
    ("unknown field", ["run", "--level", "3", "--set", "warp=9"], USAGE, "warp"),
    ("bad field value", ["run", "--level", "3", "--set", "dropout=lots"], USAGE, "dropout"),
    ("dropout out of range", ["run", "--level", "3", "--set", "dropout=1.5"], USAGE, "dropout"),
    ("sync_bn on the CPU", ["run", "--level", "3", "--dataset", "digits", "--device", "cpu",
                            "--nproc", "2", "--set", "sync_bn=true"], USAGE, "sync_bn"),
    ("batch not divisible by nproc", ["run", "--level", "3", "--nproc", "3"], USAGE, "nproc"),
    ("--set without =", ["run", "--level", "3", "--set", "dropout"], USAGE, "KEY=VALUE"),
    ("no level, no config", ["run"], USAGE, "level"),
    ("missing config file", ["run", "--config", "{in}/nope.json"], NOT_FOUND, "nope.json"),
    ("config not JSON", ["run", "--config", "{in}/not_json.json"], USAGE, "not_json.json"),
    ("config not an object", ["run", "--config", "{in}/a_list.json"], USAGE, "a_list.json"),
    ("config unknown key", ["run", "--config", "{in}/unknown_key.json"], USAGE,
     "learning_speed"),
    ("unknown dataset", ["run", "--level", "3", "--dataset", "mnist9"], NOT_FOUND, "mnist9"),
    ("dataset path traversal", ["run", "--level", "3", "--dataset", "../../etc"], USAGE, "name"),
    ("image folder missing", ["run", "--level", "3", "--dataset", "imagefolder:{in}/nowhere"],
     NOT_FOUND, "nowhere"),
    ("image folder with an empty class",
     ["run", "--level", "3", "--dataset", "imagefolder:{in}/tree_empty_class"], DATA, "emu"),
    ("weights file missing",
     ["run", "--level", "1", "--dataset", "digits", "--weights", "{in}/none.pt"], NOT_FOUND,
     "none.pt"),
    ("weights not a torch file",
     ["run", "--level", "1", "--dataset", "digits", "--weights", "{in}/junk.pt"], DATA, "junk.pt"),
    ("weights of another model",
     ["run", "--level", "1", "--dataset", "digits", "--weights", "{in}/cnn_weights.pt"], DATA,
     "ResNet"),
    # run ids and records
    ("run id with ..", ["show", "../{done}"], USAGE, "not a run id"),
    ("run id with /", ["show", "a/b"], USAGE, "not a run id"),
    ("run id with NUL", ["show", "abc\0def"], USAGE, "not a run id"),
    ("run id unknown", ["show", "20990101-nothing"], NOT_FOUND, "no run"),
    ("resume with ..", ["resume", ".."], USAGE, "not a run id"),
    ("gradcam with a path", ["gradcam", "make", "/etc/passwd"], USAGE, "not a run id"),
    ("resume a finished run", ["resume", "{done}"], USAGE, "already done"),
    ("resume a checkpoint of another model", ["resume", "{foreign}"], DATA, "different model"),
    ("resume with torn checkpoints", ["resume", "{torn}"], DATA, "no good checkpoint"),
    ("config.json not JSON", ["resume", "{garbled}"], DATA, "config.json"),
    ("status.json not JSON", ["show", "{bad_status}"], DATA, "status.json"),
    ("compare unknown run", ["compare", "{done}", "nosuchrun"], NOT_FOUND, "nosuchrun"),
    # data import
    ("import a missing path", ["data", "import", "{in}/missing.tar.gz"], NOT_FOUND, "missing"),
    ("import a truncated archive", ["data", "import", "{in}/truncated.tar.gz"], DATA,
     "truncated.tar.gz"),
    ("import a corrupt archive", ["data", "import", "{in}/corrupt.tar.gz"], DATA, "corrupt"),
    ("import an empty file", ["data", "import", "{in}/empty.tar.gz"], DATA, "empty.tar.gz"),
    ("import text named .tar.gz", ["data", "import", "{in}/not_an_archive.tar.gz"], DATA,
     "not_an_archive"),
    ("import a batch of the wrong shape", ["data", "import", "{in}/wrong_shape.tar.gz"], DATA,
     "data_batch_1"),
    ("import a path-traversal tar", ["data", "import", "{in}/traversal.tar"], DATA, "unsafe"),
    ("import an absolute-path tar", ["data", "import", "{in}/absolute.tar"], DATA, "unsafe"),
    ("import a zip slip", ["data", "import", "{in}/zip_slip.zip"], DATA, "unsafe"),
    ("import a tree with an empty class", ["data", "import", "{in}/tree_empty_class"], DATA,
     "emu"),
    ("import under a bad name", ["data", "import", "{in}/cifar-10-python.tar.gz", "--name",
                                 "../evil"], USAGE, "name"),
    ("import with size 0", ["data", "import", "{in}/tree_src", "--size", "0"], USAGE, "size"),
    # the queue
    ("submit an unknown level", ["submit", "--level", "9"], USAGE, "level"),
    ("submit a huge priority", ["submit", "--level", "3", "--priority", "99999999999"], USAGE,
     "priority"),
    ("cancel a non-number", ["cancel", "abc"], USAGE, "job"),
    ("cancel a missing job", ["cancel", "999"], NOT_FOUND, "999"),
    ("retry a missing job", ["retry", "998"], NOT_FOUND, "998"),
    ("retry a queued job", ["retry", "1"], USAGE, "queued"),
    ("logs of a missing job", ["logs", "997"], NOT_FOUND, "997"),
    ("worker with bad gpus", ["worker", "--gpus", "0,x"], USAGE, "gpus"),
]


def _expand(arg: str, world: dict[str, Path]) -> str:
    return arg.format(runs=world["runs"], data=world["data"], **{"in": world["inputs"]},
                      **{k: world[k].name for k in
                         ("done", "paused", "foreign", "torn", "garbled", "bad_status")})


def snapshot(world: dict[str, Path]) -> dict[str, object]:
    """Every file's SHA-256 under runs, data and inputs, and the queue's rows."""
    files = {}
    for key in ("runs", "data", "inputs"):
        for p in sorted(world[key].rglob("*")):
            if p.is_file() and not p.name.startswith("lab.db"):
                files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                files[str(p)] = "dir"
    db = sqlite3.connect(f"file:{world['runs'] / 'lab.db'}?mode=ro", uri=True)
    rows = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()  # noqa: S608 - fixed names
            for t in ("jobs", "workers")}
    db.close()
    return {"files": files, "rows": rows}


def assert_one_line(err: str, phrase: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lab: error: ") and "Traceback" not in err, err
    assert phrase.lower() in lines[0].lower(), (phrase, lines[0])


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("argv", "code", "phrase"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_an_exit_code_and_no_change(
        world: dict[str, Path], argv: list[str], code: int, phrase: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_RUNS_DIR", str(world["runs"]))
    monkeypatch.setenv("LAB_DATA_DIR", str(world["data"]))
    before = snapshot(world)
    got, err = run_cli([_expand(a, world) for a in argv], capsys)
    assert got == code, err
    assert_one_line(err, _expand(phrase, world))
    assert snapshot(world) == before


def test_debug_adds_the_traceback(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_RUNS_DIR", str(world["runs"]))
    got, err = run_cli(["show", "--debug", "20990101-nothing"], capsys)
    assert got == NOT_FOUND and "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("lab: error: no run")


@pytest.mark.slow
def test_a_database_locked_by_another_process(world: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the write lock; `lab submit` and `lab cancel` wait, then give up
    with exit 75 and change nothing."""
    monkeypatch.setenv("LAB_RUNS_DIR", str(world["runs"]))
    monkeypatch.setenv("LAB_DB_TIMEOUT", "0.5")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(60)",
         str(world["runs"] / "lab.db")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(world)
        for argv in (["submit", "--level", "3", "--dataset", "digits"], ["cancel", "1"]):
            proc = subprocess.run([sys.executable, "-m", "lab", *argv], capture_output=True,
                                  text=True, env={**env(), "LAB_DB_TIMEOUT": "0.5"}, timeout=60)
            assert proc.returncode == BUSY, proc.stderr
            assert_one_line(proc.stderr, "locked by another process")
        assert snapshot(world) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("argv", [
    ["run", "--level", "3", "--dataset", "digits", "--epochs", "1"],
    ["submit", "--level", "3", "--dataset", "digits"],
    ["resume", "{paused}"],
    ["gradcam", "make", "{done}"],
    ["data", "import", "{in}/tree_src"],
], ids=["run", "submit", "resume", "gradcam", "data import"])
@pytest.mark.slow
def test_a_read_only_runs_or_data_directory(world: dict[str, Path], argv: list[str]) -> None:
    """A read-only runs (or data) directory: exit 74, one line naming the path, no change.
    The child keeps uid 0 under CI but has no capabilities, so permission bits hold for it."""
    make_read_only(world["runs"])
    make_read_only(world["data"])
    try:
        before = snapshot(world)
        proc = subprocess.run(
            [sys.executable, "-m", "lab", *[_expand(a, world) for a in argv]],
            capture_output=True, text=True, timeout=300, preexec_fn=drop_capabilities,
            env={**env(), "LAB_RUNS_DIR": str(world["runs"]),
                 "LAB_DATA_DIR": str(world["data"])})
        assert proc.returncode == IO, proc.stderr
        assert_one_line(proc.stderr, str(world["runs" if argv[0] != "data" else "data"]))
        assert any(w in proc.stderr.lower() for w in ("permission denied", "readonly")), \
            proc.stderr
        assert snapshot(world) == before
    finally:
        make_writable(world["runs"])
        make_writable(world["data"])
