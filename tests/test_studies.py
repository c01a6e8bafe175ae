"""Studies in the queue (issue 15, part B): a grid of configs times seeds is planned and
validated whole, queued in one transaction (never a partial grid), listed with its progress,
and cancelled or retried as a group without touching other jobs. Real SQLite files, the CLI
in-process."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lab.config import RunConfig
from lab.errors import ConfigError, NotFoundError, StorageError
from lab.levels import level_config
from lab.queue import JobQueue, studies
from tests.cli_inprocess import one_click_command, run_cli_io

_one_click_command = pytest.fixture(autouse=True, scope="module")(one_click_command)

BASE = level_config(3).replace(dataset="digits", image_size=16, epochs=1, seed=5)
DIGITS = ["--dataset", "digits", "--weights", "none"]


def lab(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_cli_io(argv, capsys)


def fingerprint(runs: Path) -> dict[str, Any]:
    """Every file in the runs directory: its bytes and modification time."""
    if not runs.exists():
        return {}
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(runs.iterdir()) if p.is_file()}


def dump(path: Path) -> list[str]:
    """The database's whole content, as SQL, read through a fresh connection."""
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def jobs_of(runs: Path) -> list[tuple[int, str | None, str, int]]:
    with JobQueue.open(runs, create=False, readonly=True) as queue:
        return [(j.id, j.study, j.state, j.config["seed"]) for j in queue.jobs()]


# ---- expanding a grid ------------------------------------------------------------------
@pytest.mark.parametrize("sweep", [
    {"lr": ["1e-3", "3e-4"], "dropout": ["0", "0.5"]},  # as typed on the command line
    {"lr": [1e-3, 3e-4], "dropout": [0, 0.5]},  # as a study file's [sweep] table holds them
], ids=["strings", "typed"])
def test_a_grid_is_the_product_in_order_with_consecutive_seeds(sweep: dict) -> None:
    configs = studies.expand_grid(BASE, sweep, 2, "g1")
    got = [(c.lr, c.dropout, c.seed) for c in configs]
    assert got == [(1e-3, 0.0, 5), (1e-3, 0.0, 6), (1e-3, 0.5, 5), (1e-3, 0.5, 6),
                   (3e-4, 0.0, 5), (3e-4, 0.0, 6), (3e-4, 0.5, 5), (3e-4, 0.5, 6)]
    assert {c.study for c in configs} == {"g1"}
    assert {c.split_seed for c in configs} == {BASE.split_seed}  # the split never varies
    for c in configs:  # everything else is the base's
        assert c.replace(lr=BASE.lr, dropout=BASE.dropout, seed=BASE.seed, study="") == BASE


@pytest.mark.parametrize(("shape", "seeds"), [((), 3), ((1,), 1), ((3, 2), 1), ((2, 2, 2), 2),
                                              ((4, 1, 3), 3)])
def test_a_grid_holds_every_point_once(shape: tuple[int, ...], seeds: int) -> None:
    values = {"lr": ["1e-3", "2e-3", "3e-3", "4e-3"], "dropout": ["0", "0.25", "0.5"],
              "weight_decay": ["0", "1e-4", "1e-3"]}
    sweep = {name: values[name][:n] for name, n in zip(values, shape, strict=False)}
    configs = studies.plan([BASE], sweep, seeds, "g")
    size = studies.grid_size(sweep, seeds)
    assert len(configs) == size == len({c.to_json() for c in configs})
    assert sorted({c.seed for c in configs}) == list(range(5, 5 + seeds))


@pytest.mark.parametrize(("sweep", "phrase"), [
    ({"lr": ["1e-3", "20", "1e-4"]}, "grid config 2 of 3 (lr=20): lr=20.0: must be in"),
    ({"lr": ["1e-3"], "dropout": ["0", "1.5"]}, "grid config 2 of 2 (lr=1e-3, dropout=1.5)"),
    ({"model": ["cnn", "resnet18"]}, "grid config 2 of 2 (model=resnet18): model='resnet18' "
                                     "contradicts level 3"),
    ({"cnn_channels": ["[8,16]", "[8,x]"]},
     "grid config 2 of 2 (cnn_channels=[8,x]): cnn_channels="),
    ({"image_size": ["16", "4"]}, "image_size=4"),
    ({"lr": ["1e-3", "0.001"]}, "grid config 2 is the same as grid config 1"),
], ids=["lr out of range", "dropout", "level's model", "tuple", "too small", "repeat"])
def test_one_invalid_point_refuses_the_whole_grid(sweep: dict, phrase: str) -> None:
    with pytest.raises(ConfigError) as refused:
        studies.plan([BASE], sweep, 1, "g")
    assert phrase in str(refused.value) and "\n" not in str(refused.value)


def test_tuple_fields_sweep_with_brackets() -> None:
    sweep = studies.parse_sweep(["cnn_channels=[8,16],[16,32]", "lr=1e-3,2e-3"])
    assert sweep == {"cnn_channels": ["[8,16]", "[16,32]"], "lr": ["1e-3", "2e-3"]}
    assert [c.cnn_channels for c in studies.plan([BASE], sweep, 1, "g")] == \
        [(8, 16), (8, 16), (16, 32), (16, 32)]
    assert studies.parse_sweep_text("lr=1e-3,1e-4; dropout=0,0.5\n") == \
        {"lr": ["1e-3", "1e-4"], "dropout": ["0", "0.5"]}


@pytest.mark.parametrize(("items", "phrase"), [
    (["lr"], "expects KEY=V1,V2"), (["=1"], "expects KEY=V1,V2"), (["lr="], "empty value"),
    (["lr=1,,2"], "empty value"), (["seed=1,2"], "--seeds N"), (["study=a,b"], "--study"),
    (["level=1,2"], "repeat --level"), (["lrr=1"], "did you mean lr?"),
    (["lr=1", "lr=2"], "given twice"),
])
def test_bad_sweeps_are_one_line_and_queue_nothing(
        items: list[str], phrase: str, lab_dirs: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for item in items for a in ("--sweep", item)]
    code, out, err = lab(["submit", "--level", "3", *DIGITS, *args], capsys)
    assert code == 2 and phrase in err and err.count("\n") == 1, err
    assert not (lab_dirs["runs"] / "lab.db").exists()


# ---- queueing a grid -------------------------------------------------------------------
def test_submit_queues_the_grid_as_one_study(lab_dirs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    code, out, err = lab(["submit", "--level", "2", *DIGITS, "--sweep", "lr=1e-3,3e-4,1e-4",
                          "--sweep", "dropout=0,0.5", "--seeds", "3", "--study", "grid"], capsys)
    assert code == 0, err
    assert "queued 18 jobs (#1-#18, 6 configs x 3 seeds): new study grid" in out
    rows = jobs_of(runs)
    assert [r[1] for r in rows] == ["grid"] * 18
    assert [r[3] for r in rows] == [0, 1, 2] * 6
    with JobQueue.open(runs, create=False, readonly=True) as queue:
        configs = [j.config for j in queue.jobs()]
    assert [(c["lr"], c["dropout"]) for c in configs[::3]] == [
        (1e-3, 0.0), (1e-3, 0.5), (3e-4, 0.0), (3e-4, 0.5), (1e-4, 0.0), (1e-4, 0.5)]
    assert {c["study"] for c in configs} == {"grid"}  # in each job's config, so in each run's

    # repeated --level times seeds: one grid per level, in one study
    code, out, err = lab(["submit", "--study", "levels", "--level", "1", "--level", "2",
                          "--level", "3", "--seeds", "3", *DIGITS], capsys)
    assert code == 0, err
    levels = [(r[1], r[3]) for r in jobs_of(runs)[18:]]
    assert levels == [("levels", s) for s in (0, 1, 2)] * 3
    with JobQueue.open(runs, create=False, readonly=True) as queue:
        assert [j.config["level"] for j in queue.jobs()[18:]] == [1, 1, 1, 2, 2, 2, 3, 3, 3]

    # a plain submit stays a loose job; --seeds alone is a study with a generated name
    assert lab(["submit", "--level", "3", *DIGITS, "-q"], capsys)[0] == 0
    code, out, err = lab(["submit", "--level", "3", *DIGITS, "--seeds", "2"], capsys)
    assert code == 0, err
    generated = jobs_of(runs)[-1][1]
    assert generated and generated.startswith("study-") and \
        f"no --study given: this study is named {generated}" in err
    assert [r[1] for r in jobs_of(runs)[27:]] == [None, generated, generated]


def test_a_study_is_added_to_but_never_holds_a_config_twice(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    argv = ["submit", "--level", "3", *DIGITS, "--seeds", "2", "--study", "s"]
    assert lab(argv, capsys)[0] == 0
    code, out, err = lab([*argv, "--seed", "2"], capsys)  # seeds 2 and 3: added
    assert code == 0 and "added to study s, which had 2 jobs" in out, (out, err)
    before = fingerprint(runs)
    code, out, err = lab([*argv, "--seed", "3"], capsys)  # seed 3 again: refused, whole
    assert code == 2 and "study s already holds this config with seed 3 (job 4)" in err
    assert fingerprint(runs) == before
    assert [r[3] for r in jobs_of(runs)] == [0, 1, 2, 3]


def test_an_invalid_config_in_the_middle_leaves_the_queue_file_as_it_was(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    assert lab(["submit", "--level", "3", *DIGITS, "-q"], capsys)[0] == 0
    before = fingerprint(runs)
    code, out, err = lab(["submit", "--level", "3", *DIGITS, "--sweep", "lr=1e-3,20,1e-4",
                          "--sweep", "dropout=0,0.5", "--seeds", "2", "--study", "bad"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "grid config 5 of 12 (lr=20, dropout=0), seed 0: lr=20.0: must be in (0, 10]" in err
    assert fingerprint(runs) == before and out == ""


@pytest.mark.parametrize("fail_at", [1, 4, 8])
def test_a_failure_while_inserting_leaves_no_partial_grid(
        fail_at: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = studies.plan([BASE], {"lr": ["1e-3", "2e-3"], "dropout": ["0", "0.5"]}, 2, "g")
    with JobQueue.open(tmp_path) as queue:
        queue.submit([BASE])  # a job from before, kept as it is
        before = dump(queue.path)
        inserts = []
        real = queue._db

        class Failing:  # the connection, failing the fail_at-th job insert like a bad disk
            def execute(self, sql: str, *args: Any) -> Any:
                if sql.startswith("INSERT INTO jobs"):
                    inserts.append(sql)
                    if len(inserts) == fail_at:
                        raise sqlite3.OperationalError("disk I/O error")
                return real.execute(sql, *args)

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        monkeypatch.setattr(queue, "_db", Failing())
        with pytest.raises(StorageError, match="disk I/O error"):
            studies.submit_study(queue, configs)
        monkeypatch.setattr(queue, "_db", real)
        assert len(inserts) == fail_at
        assert [j.study for j in queue.jobs()] == [None]
    assert dump(tmp_path / "lab.db") == before


def test_a_grid_over_the_limit_asks_for_yes(lab_dirs: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    lrs = ",".join(f"{n}e-4" for n in range(1, 12))  # 11 x 2 x 3 = 66 jobs
    argv = ["submit", "--level", "3", *DIGITS, "--sweep", f"lr={lrs}", "--sweep",
            "dropout=0,0.5", "--seeds", "3", "--study", "big"]
    code, out, err = lab(argv, capsys)
    assert code == 2 and err == "lab: error: this grid is 66 jobs, over 64: add --yes to " \
                               "queue them all; nothing was queued\n"
    assert not (runs / "lab.db").exists()
    code, out, err = lab([*argv, "--yes", "-q"], capsys)
    assert code == 0 and len(out.split()) == 66 == len(jobs_of(runs))


def test_submit_checks_run_once_per_data_set_and_weights(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.queue.checks as checks

    seen: list[tuple[str, str]] = []
    real = checks.check_submittable
    monkeypatch.setattr(checks, "check_submittable",
                        lambda config, data_dir=None: (seen.append(
                            (config.dataset, config.weights)), real(config, data_dir))[1])
    weights = lab_dirs["runs"].parent / "w.pt"
    weights.write_bytes(b"x")
    code, _out, err = lab(["submit", "--level", "1", "--level", "2", "--dataset", "digits",
                           "--weights", str(weights), "--sweep", "lr=1e-3,3e-4,1e-4",
                           "--seeds", "3", "--study", "c", "-q"], capsys)
    assert code == 0, err
    assert seen == [("digits", str(weights.resolve()))]  # 18 jobs, one look
    with JobQueue.open(lab_dirs["runs"], create=False, readonly=True) as queue:
        assert {j.config["weights"] for j in queue.jobs()} == {str(weights.resolve())}


# ---- looking at studies, cancelling and retrying them -------------------------------------
def _three_kinds(runs: Path) -> dict[str, list[int]]:
    """Study `a` (4 jobs), study `b` (2 jobs) and a loose job; `a`'s first job running under
    this process, its second failed."""
    with JobQueue.open(runs) as queue:
        a = studies.submit_study(queue, studies.plan([BASE], {"lr": ["1e-3", "2e-3"]}, 2, "a"))
        b = studies.submit_study(queue, studies.plan([BASE], {}, 2, "b"))
        loose = queue.submit([BASE])
        first, second = (j.id for j in a.jobs[:2])
        for job_id in (first, second):
            queue.claim("w", os.getpid(), "cpu", 600.0, job_id=job_id)
        queue.finish(second, 1, "failed", error="boom")
    return {"a": [j.id for j in a.jobs], "b": [j.id for j in b.jobs],
            "loose": [j.id for j in loose]}


def test_study_lists_progress_and_shows_one_by_configuration(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    code, out, err = lab(["study", "--json"], capsys)  # no queue yet: nothing, nothing written
    assert (code, json.loads(out)) == (0, []) and not (runs / "lab.db").exists()
    _three_kinds(runs)
    code, out, err = lab(["study", "--json"], capsys)
    rows = {r["study"]: r for r in json.loads(out)}
    assert list(rows) == ["a", "b"]
    assert {k: rows["a"][k] for k in ("jobs", "done", "running", "queued", "failed",
                                      "cancelled", "configs", "seeds")} == \
        {"jobs": 4, "done": 0, "running": 1, "queued": 2, "failed": 1, "cancelled": 0,
         "configs": 2, "seeds": 2}
    assert (rows["b"]["configs"], rows["b"]["seeds"], rows["b"]["queued"]) == (1, 2, 2)
    code, out, err = lab(["study"], capsys)
    assert code == 0 and "1 running, 2 queued, 1 failed" in out and "2 x 2" in out

    code, out, err = lab(["study", "a", "--json"], capsys)
    shown = json.loads(out)
    assert shown["varying"] == ["lr"]
    assert [(g["values"], [(j["id"], j["seed"]) for j in g["jobs"]])
            for g in shown["groups"]] == [({"lr": 1e-3}, [(1, 5), (2, 6)]),
                                          ({"lr": 2e-3}, [(3, 5), (4, 6)])]
    code, out, err = lab(["study", "a"], capsys)
    assert code == 0 and "varies: lr" in out and "lr=0.002" in out and "boom" in out


@pytest.mark.parametrize(("argv", "phrase"), [
    (["study", "aa"], "no study 'aa': did you mean a?"),
    (["study", "zzz"], "no study 'zzz' (studies: a, b)"),
    (["cancel", "--study", "bb"], "no study 'bb': did you mean b?"),
    (["retry", "--study", "x"], "no study 'x' (studies: a, b)"),
    (["cancel", "1", "--study", "a"], "not both"),
    (["cancel"], "name a job (JOB) or a study (--study NAME)"),
    (["retry"], "name a job (JOB) or a study (--study NAME)"),
    (["cancel", "--study", "a", "--wait"], "--wait waits for one job"),
])
def test_bad_study_references_are_one_line_and_change_nothing(
        argv: list[str], phrase: str, lab_dirs: dict[str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    _three_kinds(runs)
    before = dump(runs / "lab.db")
    code, out, err = lab(argv, capsys)
    assert code in (2, 3) and phrase in err and err.count("\n") == 1, err
    assert dump(runs / "lab.db") == before


def test_cancel_a_study_cancels_its_waiting_jobs_only(
        lab_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    runs = lab_dirs["runs"]
    ids = _three_kinds(runs)
    before = {r[0]: r for r in jobs_of(runs)}
    code, out, err = lab(["cancel", "--study", "a"], capsys)
    assert code == 0, err
    assert "study a: cancelled 2 waiting jobs" in out
    assert "1 running job left running (1): `lab cancel 1` stops one" in out
    after = {r[0]: r for r in jobs_of(runs)}
    assert [after[i][2] for i in ids["a"]] == ["running", "failed", "cancelled", "cancelled"]
    for other in ids["b"] + ids["loose"]:  # other studies and loose jobs: untouched
        assert after[other] == before[other] and after[other][2] == "queued"
    with JobQueue.open(runs, create=False, readonly=True) as queue:
        assert not queue.get(ids["a"][0]).cancel_requested  # the running one goes on

    code, out, err = lab(["retry", "--study", "a"], capsys)
    assert code == 0 and "study a: 3 failed or cancelled jobs queued again: 2 3 4" in out
    after = {r[0]: r for r in jobs_of(runs)}
    assert [after[i][2] for i in ids["a"]] == ["running", "queued", "queued", "queued"]
    assert all(after[i] == before[i] for i in ids["b"] + ids["loose"])


def test_unknown_study_suggests_a_name() -> None:
    error = studies.unknown_study("level", ["levels", "grid"])
    assert isinstance(error, NotFoundError) and "did you mean levels?" in str(error)
    assert "lab submit --study NAME" in str(studies.unknown_study("x", []))


def test_a_generated_name_never_adds_to_a_study(tmp_path: Path) -> None:
    """Two submits in one second get one generated name: the second becomes `NAME-2`."""
    name = studies.generated_name()
    with JobQueue.open(tmp_path) as queue:
        first = studies.submit_study(queue, studies.plan([BASE], {}, 2, name), generated=True)
        second = studies.submit_study(queue, studies.plan([BASE], {}, 2, name), generated=True)
        third = studies.submit_study(queue, studies.plan([BASE], {}, 2, name), generated=True)
        assert (first.study, second.study, third.study) == (name, f"{name}-2", f"{name}-3")
        assert [j.study for j in queue.jobs()] == [name] * 2 + [f"{name}-2"] * 2 + \
            [f"{name}-3"] * 2
        assert {j.config["study"] for j in second.jobs} == {f"{name}-2"}
        assert "new study" in second.describe()


def test_submit_study_takes_one_named_study(tmp_path: Path) -> None:
    with JobQueue.open(tmp_path) as queue, pytest.raises(ValueError):
        studies.submit_study(queue, [BASE, RunConfig(study="x")])


@pytest.mark.slow  # a real worker and eight job processes
def test_a_2x2x2_study_runs_to_completion_under_a_real_worker(lab_dirs: dict[str, Path]) -> None:
    from lab.runs import RunDir
    from tests.jobtools import lab_json, processes, submit

    runs = lab_dirs["runs"]
    tiny = ["--level", "3", "--dataset", "digits", "--epochs", "1",
            "--set", "cnn_channels=4,8", "--set", "image_size=8", "--set", "cnn_hidden=8",
            "--set", "gradcam=0", "--device", "cpu", "--seed", "7"]
    ids = submit(runs, *tiny, "--sweep", "lr=1e-3,3e-3", "--sweep", "dropout=0,0.5",
                 "--seeds", "2", "--study", "e2e")
    assert len(ids) == 8
    with processes() as procs:
        worker = procs.worker(runs, "--exit-when-idle")
        assert worker.wait(timeout=600) == 0, worker.stdout.read()
    (row,) = lab_json("study", "--runs-dir", str(runs))
    assert (row["study"], row["jobs"], row["done"], row["configs"], row["seeds"]) == \
        ("e2e", 8, 8, 4, 2)
    shown = lab_json("study", "e2e", "--runs-dir", str(runs))
    assert shown["varying"] == ["dropout", "lr"]  # in the config's field order
    with JobQueue.open(runs, create=False, readonly=True) as queue:
        jobs = queue.study_jobs("e2e")
    assert [j.state for j in jobs] == ["done"] * 8
    configs = [RunDir(runs / j.run_id).config() for j in jobs]
    assert [(c.lr, c.dropout, c.seed) for c in configs] == [
        (lr, dropout, seed) for lr in (1e-3, 3e-3) for dropout in (0.0, 0.5) for seed in (7, 8)]
    assert {(c.study, c.split_seed, c.epochs) for c in configs} == {("e2e", 42, 1)}
    for group in shown["groups"]:
        assert [j["display_state"] for j in group["jobs"]] == ["done", "done"]
        assert all(0 <= j["test_acc"] <= 1 for j in group["jobs"])
