"""The run directory: ids, atomic records, tolerant readers, and refusing paths as run ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lab.errors import ConfigError, NotFoundError
from lab.levels import level_config
from lab.runs import (
    append_jsonl,
    atomic_write_json,
    list_runs,
    new_run,
    read_jsonl,
    read_jsonl_counted,
    resolve_run,
    summarize,
)


def test_new_runs_have_unique_sortable_ids(tmp_path: Path) -> None:
    runs = [new_run(tmp_path, level_config(3)) for _ in range(5)]
    assert len({r.id for r in runs}) == 5
    assert all(r.config() == level_config(3) for r in runs)
    assert all(r.status()["state"] == "created" for r in runs)
    assert {r.id for r in list_runs(tmp_path)} == {r.id for r in runs}


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"event": "epoch", "epoch": 1})
    append_jsonl(path, {"event": "epoch", "epoch": 2})
    with open(path, "ab") as fh:
        fh.write(b'{"event": "epoch", "epo')  # a writer killed mid-line
    assert [e["epoch"] for e in read_jsonl(path)] == [1, 2]
    append_jsonl(path, {"event": "epoch", "epoch": 3})  # the next writer's line stays whole
    assert [e["epoch"] for e in read_jsonl(path)] == [1, 2, 3]
    assert read_jsonl_counted(path)[1] == 1


def test_atomic_write_leaves_no_temp_and_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    atomic_write_json(path, {"state": "running"})
    atomic_write_json(path, {"state": "done"})
    assert json.loads(path.read_text()) == {"state": "done"}
    assert os.listdir(tmp_path) == ["status.json"]


def test_keep_events_through_drops_later_epochs(tmp_path: Path) -> None:
    run = new_run(tmp_path, level_config(1))
    for e in [{"event": "start", "epoch": 0}, {"event": "step", "epoch": 1},
              {"event": "epoch", "epoch": 1}, {"event": "step", "epoch": 2}]:
        run.append_event(e)
    run.keep_events_through(1)
    assert [(e["event"], e["epoch"]) for e in run.events()] == [
        ("start", 0), ("step", 1), ("epoch", 1)]


@pytest.mark.parametrize("ref", ["../../etc", "/etc", "a/b", "..", ".hidden", ""])
def test_paths_are_not_run_ids(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ConfigError, match="is not a run id"):
        resolve_run(tmp_path, ref)


def test_resolve_by_prefix_and_latest(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        resolve_run(tmp_path, "latest")
    a = new_run(tmp_path, level_config(1))
    b = new_run(tmp_path, level_config(2))
    assert resolve_run(tmp_path, "latest").id == max(a.id, b.id)
    assert resolve_run(tmp_path, a.id).id == a.id
    assert resolve_run(tmp_path, a.id[:-1]).id == a.id  # a unique prefix (l1 vs l2 differ)
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_run(tmp_path, a.id[:4])  # the year: both runs
    with pytest.raises(NotFoundError):
        resolve_run(tmp_path, "nope")


def test_dead_running_run_reads_as_interrupted_and_corrupt_run_is_marked(tmp_path: Path) -> None:
    run = new_run(tmp_path, level_config(1))
    run.update_status(state="running", pid=2**22 + 12345)  # no such process
    assert run.live_state() == "interrupted"
    run.update_status(state="running", pid=os.getpid())
    assert run.live_state() == "running"
    broken = new_run(tmp_path, level_config(2))
    broken.config_path.write_text("{ half a config")
    rows = {r["run_id"]: r for r in map(summarize, list_runs(tmp_path))}
    assert rows[broken.id]["state"] == "corrupt"
    assert rows[run.id]["state"] == "running"


def test_a_config_key_from_another_version_does_not_make_a_run_unreadable(tmp_path: Path) -> None:
    run = new_run(tmp_path, level_config(3))
    data = json.loads(run.config_path.read_text())
    data["recipe"] = "tuned"  # a field this version does not know
    del data["tta_flip"]  # and one an older version did not write
    run.config_path.write_text(json.dumps(data))
    assert run.config() == level_config(3)
    assert summarize(run)["state"] == "created"
    with pytest.raises(ConfigError, match="unknown config key"):
        from lab.config import RunConfig

        RunConfig.from_dict(data)  # from a person (--config), the same key is refused
