"""What `lab demo` says while it trains (`lab.views.demo`): a line per stage with the level's
and the whole demo's time left, estimated from what has been measured. A fake clock drives it:
no training, no waiting."""

from __future__ import annotations

import pytest

from lab.views.demo import PRIOR_EPOCH_COST, DemoProgress, LevelPlan, clock


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def plan() -> list[LevelPlan]:
    return [LevelPlan("L1", "Level 1, ResNet18", "resnet18", 2),
            LevelPlan("L2", "Level 2, ResNet18", "resnet18", 1),
            LevelPlan("L3", "Level 3, custom CNN", "cnn", 3)]


def run_level(demo: DemoProgress, now: Clock, index: int, setup: float, epoch: float,
              finish: float, batches: int = 4) -> None:
    listen = demo.level(index)
    now.t += setup
    listen({"event": "start", "epochs": demo.plan[index].epochs})
    for e in range(1, demo.plan[index].epochs + 1):
        for b in range(1, batches + 1):
            now.t += epoch / batches
            listen({"event": "batch", "epoch": e, "batch": b, "batches": batches})
        listen({"event": "epoch", "epoch": e})
    now.t += finish / 2
    listen({"event": "test"})
    now.t += finish / 2
    listen({"event": "done"})


def test_every_stage_of_every_level_gets_a_line_with_the_time_left() -> None:
    lines: list[str] = []
    now = Clock()
    demo = DemoProgress(plan(), lines.append, now=now)
    for i, (setup, epoch, finish) in enumerate([(4, 10, 2), (2, 10, 2), (2, 3, 2)]):
        run_level(demo, now, i, setup, epoch, finish)
    stages = [line.split("  [")[0] for line in lines if ", batch " not in line]
    assert stages == [
        "demo 1/3 L1: setting up (Level 1, ResNet18, 2 epochs)",
        "demo 1/3 L1: training, epoch 1/2",
        "demo 1/3 L1: epoch 1/2 done, training epoch 2",
        "demo 1/3 L1: epoch 2/2 done, testing",
        "demo 1/3 L1: Grad-CAM gallery",
        "demo 1/3 L1: done in 0:26",
        "demo 2/3 L2: setting up (Level 2, ResNet18, 1 epoch)",
        "demo 2/3 L2: training, epoch 1/1",
        "demo 2/3 L2: epoch 1/1 done, testing",
        "demo 2/3 L2: Grad-CAM gallery",
        "demo 2/3 L2: done in 0:14",
        "demo 3/3 L3: setting up (Level 3, custom CNN, 3 epochs)",
        "demo 3/3 L3: training, epoch 1/3",
        "demo 3/3 L3: epoch 1/3 done, training epoch 2",
        "demo 3/3 L3: epoch 2/3 done, training epoch 3",
        "demo 3/3 L3: epoch 3/3 done, testing",
        "demo 3/3 L3: Grad-CAM gallery",
        "demo 3/3 L3: done in 0:13",
    ]
    assert "ETA: measuring" in lines[0]  # nothing measured yet
    assert all("elapsed]" in line for line in lines)
    assert lines[-1].endswith("[ETA all 0:00; 0:53 elapsed]")


def test_the_estimate_uses_the_level_s_pace_then_the_same_model_then_the_prior_ratio() -> None:
    lines: list[str] = []
    now = Clock()
    demo = DemoProgress(plan(), lines.append, now=now)
    run_level(demo, now, 0, setup=4, epoch=10, finish=2)
    # L1 measured: setup 4, 10 s an epoch, finish 2. L2 (ResNet18 too, one epoch) and L3
    # (the CNN, three epochs at the prior ratio) are estimated from it.
    l2 = 4 + 10 + 2
    l3 = 4 + 3 * 10 * PRIOR_EPOCH_COST["cnn"] / PRIOR_EPOCH_COST["resnet18"] + 2
    assert lines[-1].endswith(f"[ETA all {clock(l2 + l3)}; 0:26 elapsed]")
    # mid L2's first epoch: its own pace (here twice L1's) replaces L1's
    listen = demo.level(1)
    now.t += 4
    listen({"event": "start", "epochs": 1})
    now.t += 10
    listen({"event": "batch", "epoch": 1, "batch": 1, "batches": 2})  # 20 s an epoch
    assert demo.left(1) == pytest.approx(10 + 2)
    assert demo.left(2) == pytest.approx(4 + 3 * 20 * PRIOR_EPOCH_COST["cnn"] + 2)


def test_a_long_epoch_gets_a_line_every_so_often() -> None:
    lines: list[str] = []
    now = Clock()
    demo = DemoProgress(plan()[:1], lines.append, now=now)
    listen = demo.level(0)
    listen({"event": "start", "epochs": 2})
    for b in range(1, 31):
        now.t += 1.0
        listen({"event": "batch", "epoch": 1, "batch": b, "batches": 30})
    notes = [line for line in lines if "batch" in line]
    assert [n.split("  [")[0] for n in notes] == [
        "demo 1/1 L1: training, epoch 1/2, batch 10/30",
        "demo 1/1 L1: training, epoch 1/2, batch 20/30",
        "demo 1/1 L1: training, epoch 1/2, batch 30/30"]
    assert "ETA level 0:30, all 0:30" in notes[-1]  # the second epoch at the pace measured


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (59.4, "0:59"), (61, "1:01"),
                                               (3600, "60:00"), (-3, "0:00")])
def test_clock(seconds: float, text: str) -> None:
    assert clock(seconds) == text
