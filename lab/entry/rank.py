"""`python -m lab.entry.rank RUN_DIR --data-dir D [--resume]`: one rank, started by `launch`.

It trains its share of the run and reports how it ended to the launcher: exit 130 after a stop
on request (the run is resumable), its error through torchrun's error file otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from lab.core.collectives import from_env, leave, shutdown
from lab.core.stopping import SignalStop
from lab.errors import ConfigError, LabError
from lab.launch.torchrun import STOPPED_EXIT
from lab.runs import RunDir
from lab.views.progress import ProgressPrinter

PEER_GRACE_S = 3.0


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_main)(argv)


def _main(argv: list[str] | None) -> int:
    from lab.launch.session import train_run

    parser = argparse.ArgumentParser(prog="python -m lab.entry.rank")
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--job", type=int)
    args = parser.parse_args(argv)
    dist = from_env()
    if dist is None:
        raise ConfigError("python -m lab.entry.rank runs under torchrun (RANK, WORLD_SIZE)")
    run = RunDir(args.run)
    config = run.config()
    try:
        with SignalStop(escalate=False, announce=False) as signals:
            should_stop = _stop_check(signals, args.job, run) if dist.main else signals
            quiet = args.quiet or not dist.main
            with ProgressPrinter(None, config.label, quiet=quiet,
                                 rich_bar=False if args.plain else None) as emit:
                train_run(config, run, args.data_dir, emit=emit, resume=args.resume,
                          should_stop=should_stop, dist=dist)
    except KeyboardInterrupt:
        return STOPPED_EXIT
    except Exception as exc:  # one line here, and the whole message for the launcher
        import torch.distributed as td
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        lost_peer = isinstance(exc, td.DistError) or any(
            k in str(exc).lower() for k in ("closed by peer", "reset by peer", "remote"))
        if lost_peer:
            # A consequence: wait a moment, so the agent sees the rank that died first and
            # reports that one; and say nothing here, the launcher says it.
            time.sleep(PEER_GRACE_S)
        ErrorHandler().record_exception(exc)
        if os.environ.get("LAB_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        text = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        if not lost_peer:
            sys.stderr.write(f"lab: error: rank {dist.rank}: {' '.join(text.split())}\n")
        return 1
    finally:
        shutdown()
    return 0


def _stop_check(signals: SignalStop, job: int | None, run: RunDir) -> Any:
    """Rank 0 also stops for a cancelled job, or when the launcher that started it is gone."""
    if job is None:
        return signals
    from lab.queue import JobQueue
    from lab.queue.jobrun import StopCheck

    queue = JobQueue.open(run.path.parent)
    # our parent is torchrun's agent, inside the job process: it going away is a crash
    return StopCheck(queue, job, parent=os.getppid(), signals=signals)


if __name__ == "__main__":
    leave(main())
