"""bench/gpu_check.py's own logic, without training: the plan, time limits, skips, the JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
gc = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gc  # dataclasses look their module up while the file loads
_spec.loader.exec_module(gc)

PY = sys.executable


def _check(tmp_path: Path, budget: float = 60.0, dry: bool = True) -> gc.Check:
    return gc.Check(tmp_path / "out", tmp_path / "scratch", dry, budget)


def _saved(ck: gc.Check) -> dict:
    return json.loads((ck.out / gc.JSON_NAME).read_text())


def test_plan_is_the_same_steps_in_both_modes() -> None:
    real, dry = gc.plan(False), gc.plan(True)
    assert [s.name for s in real] == [s.name for s in dry]
    names = [s.name for s in real]
    order = ["facts", "data_import", "cuda_tests", "bench_b64_fp32", "run_l3_224",
             "run_l3_tuned", "run_l1_scratch", "gradcam", "worker", "ddp"]
    assert [n for n in names if n in order] == order  # the brief's order, a to j
    assert sum(n.startswith("bench_") for n in names) == 8


def test_real_plan_runs_on_cuda_at_224() -> None:
    steps = {s.name: s for s in gc.plan(False)}
    assert all(s.skip is None for s in steps.values())
    run = steps["run_l3_224"].argv
    assert run[run.index("--image-size") + 1] == "224" and run[run.index("--epochs") + 1] == "5"
    assert run[run.index("--device") + 1] == "cuda" and "cifar10" in run
    assert "--compile" in steps["bench_b256_bf16_cl_compile"].argv
    assert "--channels-last" in steps["bench_b256_bf16_cl"].argv
    refs = [n for n, s in steps.items()
            if n.startswith("bench_") and "--no-references" not in s.argv]
    assert refs == ["bench_b64_fp32", "bench_b256_bf16_cl"]
    assert steps["ddp"].extra["backend"] == "nccl"
    assert "data_import" in steps["run_l1_scratch"].needs


def test_dry_plan_stays_on_the_cpu_and_small() -> None:
    for step in gc.plan(True):
        if "--device" in step.argv:
            assert step.argv[step.argv.index("--device") + 1] == "cpu", step.name
        if "--image-size" in step.argv:
            assert int(step.argv[step.argv.index("--image-size") + 1]) <= 32, step.name
        if "--epochs" in step.argv:
            assert step.argv[step.argv.index("--epochs") + 1] == "1", step.name
        if step.name.startswith("bench_"):
            assert step.argv[step.argv.index("--steps") + 1] == "3"
        if step.name.startswith("run_"):
            assert "digits" in step.argv and not step.needs
    steps = {s.name: s for s in gc.plan(True)}
    assert steps["bench_b64_bf16_cl_compile"].skip.startswith("dry-run")
    assert steps["bench_b64_bf16"].skip.startswith("dry-run")  # ~14 s a step on this CPU
    assert steps["bench_b64_bf16_cl"].skip is None
    assert steps["cuda_tests"].skip is None  # it runs: its tests skip themselves
    assert steps["ddp"].extra["backend"] == "gloo"


def _fake(argv: list[str], min_s: float = 0.0, **kw) -> gc.Step:
    def handler(ck, step, fig):
        fig["key"] = "ran"
        fig["seen"] = {n: r["status"] for n, r in _saved(ck)["steps"].items()}
        ck.sh(argv, step.deadline)

    return gc.Step(kw.pop("name", "fake"), "a fake step", handler, kw.pop("limit", 10.0),
                   min_s, **kw)


def test_timeout_kills_the_step_and_the_next_one_still_runs(tmp_path: Path) -> None:
    ck = _check(tmp_path)
    t0 = time.monotonic()
    steps = [_fake([PY, "-c", "import time; time.sleep(300)"], name="sleeper", limit=1.0),
             _fake([PY, "-c", "import sys; print('error: boom', file=sys.stderr); sys.exit(3)"],
                   name="failing"),
             _fake([PY, "-c", "print('{}')"], name="after")]
    res = ck.run(steps)
    ck.close()
    assert time.monotonic() - t0 < 250  # the sleeper was killed, not waited for
    s = res["steps"]
    assert s["sleeper"]["status"] == "timeout" and "killed after" in s["sleeper"]["error"]
    assert s["failing"]["status"] == "failed" and "error: boom" in s["failing"]["error"]
    assert s["after"]["status"] == "ok"
    # the JSON on disk was rewritten after every step: each step saw the ones before it
    assert s["after"]["seen"] == {"sleeper": "timeout", "failing": "failed", "after": "running"}
    assert _saved(ck)["finished"] is True
    log = (ck.out / gc.LOG_NAME).read_text()
    assert "error: boom" in log and "=== sleeper: timeout" in log


def test_a_step_is_skipped_when_the_budget_is_short(tmp_path: Path) -> None:
    ck = _check(tmp_path, budget=1.5)
    steps = [_fake([PY, "-c", "import time; time.sleep(300)"], name="long", limit=60.0),
             _fake([PY, "-c", "pass"], name="next", min_s=1.0)]
    res = ck.run(steps)
    ck.close()
    assert res["steps"]["long"]["status"] == "timeout"
    assert res["steps"]["long"]["limit_s"] <= 1.5  # the budget, not the step's 60 s
    assert res["steps"]["next"]["status"] == "skipped"
    assert "budget left" in res["steps"]["next"]["note"]
    assert any(line.startswith("next: skipped") for line in _saved(ck)["summary"])


def _nap(name: str, seconds: float, **kw) -> gc.Step:
    return gc.Step(name, "sleeps in the driver", lambda ck, step, fig: time.sleep(seconds),
                   10.0, **kw)


def test_needs_group_caps_and_plan_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gc.GROUP_CAPS, "g", (1.0, 1.0))
    ck = _check(tmp_path)
    steps = [_nap("g1", 0.6, min_s=0.6, group="g"), _nap("g2", 0.0, min_s=0.6, group="g"),
             _nap("other", 0.0, min_s=1.0),
             _fake([PY, "-c", "raise SystemExit(1)"], name="base"),
             _nap("child", 0.0, min_s=0.0, needs=("base",)),
             _nap("planned_out", 0.0, min_s=0.0, skip="dry-run: no CUDA")]
    res = ck.run(steps)
    ck.close()
    s = res["steps"]
    assert s["g1"]["status"] == "ok" and s["g1"]["limit_s"] <= 1.0  # the group's cap
    assert s["g2"]["status"] == "skipped" and "the g steps used" in s["g2"]["note"]
    assert s["other"]["status"] == "ok"
    assert s["child"]["status"] == "skipped" and s["child"]["note"] == "needs base, which is failed"
    assert s["planned_out"] == {"title": "sleeps in the driver", "status": "skipped",
                                "note": "dry-run: no CUDA"}


def test_sampler_keeps_the_peak_per_step() -> None:
    fake = [PY, "-c", "print('100, 5'); print('garbage'); print('300, 50'); print('200, 7')"]
    sampler = gc.Sampler(fake)
    sampler.popen.wait(10)
    time.sleep(0.2)
    assert sampler.peak() == {"gpu_peak_mem_mib": 300.0, "gpu_max_util_pct": 50.0,
                              "gpu_samples": 3}
    sampler.reset()
    assert sampler.peak()["gpu_peak_mem_mib"] is None
    assert gc.Sampler(None).peak() == {}  # no nvidia-smi: the steps carry no GPU figures


def test_parse_json_and_extract_run() -> None:
    assert gc.parse_json('noise\n{"a": [1]}\n') == {"a": [1]}
    with pytest.raises(gc.StepFailed):
        gc.parse_json("no json here")
    fig: dict = {}
    gc.extract_run({"level": 3, "dataset": "cifar10", "epochs": 5, "test_acc": 0.66,
                    "throughput": {"train_images_per_s": 12345.0},
                    "timings": {"total_seconds": 48.0}}, fig)
    assert fig["key"] == "test 66.00% (study 65.89%), train 12,345 img/s, total 48.0 s"


def test_scratch_is_emptied_only_when_it_is_ours(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    gc.prepare_scratch(mine)
    (mine / "runs").mkdir()
    gc.prepare_scratch(mine)
    assert not (mine / "runs").exists() and (mine / gc.SCRATCH_MARK).exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious").write_text("x")
    with pytest.raises(SystemExit):
        gc.prepare_scratch(other)
    assert (other / "precious").exists()


def test_a_signal_mid_step_is_recorded(tmp_path: Path) -> None:
    def handler(ck, step, fig):
        ck.start([PY, "-c", "import time; time.sleep(300)"])
        raise gc.Interrupted("SIGTERM")  # what the driver's signal handler raises

    ck = _check(tmp_path)
    with pytest.raises(gc.Interrupted):
        ck.run([gc.Step("busy", "busy", handler, 10.0, 0.0), _nap("later", 0.0, min_s=0.0)])
    assert not ck.children  # its command was killed
    ck.close()
    saved = _saved(ck)
    assert saved["interrupted"] == "SIGTERM during busy" and saved["finished"] is False
    assert saved["steps"]["busy"]["status"] == "interrupted"
    assert saved["steps"]["later"]["status"] == "pending"
