"""One load process for tests/test_load.py: `python -m tests.loadgen RUNS SECONDS SEED`.

For SECONDS it submits, cancels and lists through the engine's queue API (what `lab submit`,
`lab cancel` and `lab queue` call), at random, then prints what it did as one JSON line.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from lab.errors import LabError
from lab.levels import level_config
from lab.queue import JobQueue
from lab.queue.actions import cancel_job

TINY = level_config(3).replace(dataset="digits", image_size=16, epochs=1, device="cpu",
                               cnn_channels=(8, 16, 16, 32), cnn_hidden=32, gradcam=0)


def main(runs: Path, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    done: dict = {"submitted": [], "cancelled": [], "cancel_refused": 0, "listed": 0}
    deadline = time.monotonic() + seconds
    with JobQueue.open(runs) as queue:
        while time.monotonic() < deadline:
            action = rng.random()
            if action < 0.35:
                jobs = queue.submit([TINY] * rng.randint(1, 3), priority=rng.randint(-5, 5))
                done["submitted"] += [j.id for j in jobs]
            elif action < 0.6:
                open_jobs = queue.jobs(("queued", "running"))
                if open_jobs:
                    job = rng.choice(open_jobs)
                    try:
                        cancel_job(queue, job.id)
                        done["cancelled"].append(job.id)
                    except LabError:  # it finished (or was cancelled) meanwhile
                        done["cancel_refused"] += 1
            else:
                queue.jobs()
                done["listed"] += 1
            time.sleep(rng.uniform(0.02, 0.15))
    return done


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))))
