"""The first signal ends `lab` with exit 130 and one line, whenever in `main` it arrives.

CI caught a SIGTERM that came after the first handler was installed but before `main` had
entered its `try`: it escaped as a traceback and exit 1. Here a real signal is sent to this
process at each moment of the handlers' life (while they are installed one by one, in the
command, while they are restored) and `main` must report it the same way every time.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lab.cli as cli
from lab.cli import signals as lab_signals

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signals reach the main thread only")


def _is_ours(handler: object) -> bool:
    return getattr(handler, "__qualname__", "").startswith("interrupt_on_signals")


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in lab_signals.HANDLED}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _sender(signum: int, at_call: int, installing: bool) -> Callable[..., object]:
    """A `signal.signal` that sends `signum` to this process right after its `at_call`-th call
    (counting installs when `installing`, else restores), while our handler is in place."""
    real = signal.signal
    calls = {"n": 0}

    def fake(sig: int, handler: object) -> object:
        previous = real(sig, handler)
        if _is_ours(handler) == installing:
            calls["n"] += 1
            if calls["n"] == at_call and _is_ours(signal.getsignal(signum)):
                signal.raise_signal(signum)  # to this thread: handled before the next bytecode
        return previous

    return fake


def _main(args: list[str]) -> SystemExit:
    """How `main` ended; a `KeyboardInterrupt` escaping it fails the test (not the session)."""
    try:
        cli.main(args)
    except SystemExit as ended:
        return ended
    except KeyboardInterrupt as exc:
        pytest.fail(f"the signal escaped main: {exc!r}")
    pytest.fail("main returned instead of exiting")


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
ORDER = list(lab_signals.HANDLED)  # installed and restored in this order
# Each signal at each moment its own handler is in place: after the k-th install when it is
# among the first k, after the k-th restore when it is not among them. (Sent at another moment
# it would meet the default handler, which would end pytest.)
CASES = [pytest.param(phase, k, sig, id=f"{phase}-{k}-{signal.Signals(sig).name}")
         for sig in SIGNALS for phase, k in
         [("installing", k) for k in (1, 2, 3)] + [("restoring", k) for k in (1, 2)]
         if (ORDER.index(sig) < k) == (phase == "installing")]


@pytest.mark.parametrize(("phase", "at_call", "signum"), CASES)
def test_a_signal_during_the_handlers_set_up_or_tear_down(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        restore_handlers: None, signum: int, phase: str, at_call: int) -> None:
    monkeypatch.setattr(lab_signals.signal, "signal",
                        _sender(signum, at_call, installing=phase == "installing"))
    ended = _main(["levels"])
    err = capsys.readouterr().err
    assert ended.code == 130, err
    assert err.strip().splitlines() == [f"lab: error: interrupted by {signal.Signals(signum).name}"]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_in_the_command_and_a_second_one_while_reporting(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        restore_handlers: None, signum: int) -> None:
    def command(args: list[str]) -> int:
        signal.raise_signal(signum)
        raise AssertionError("the signal did not interrupt the command")

    real_fail = cli._fail

    def fail_twice(message: str) -> None:  # a second signal while the first is reported
        signal.raise_signal(signal.SIGTERM)
        real_fail(message)

    monkeypatch.setattr(cli, "run_fast", command)
    monkeypatch.setattr(cli, "_fail", fail_twice)
    assert _main(["anything"]).code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        f"lab: error: interrupted by {signal.Signals(signum).name}"]


# ---- the worker: a SIGTERM at each step of its start leaves no registration behind ------------
WORKER_STEPS = ["register_worker", "write_pid_file", "say", "_start_templates"]


@pytest.mark.parametrize("step", WORKER_STEPS)
def test_a_sigterm_while_the_worker_starts_leaves_no_registration_or_pid_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_handlers: None,
        step: str) -> None:
    from lab.queue import worker as worker_module
    from lab.queue.jobs import JobQueue
    from lab.queue.worker import Slot, Worker, pid_file

    runs = tmp_path / "runs"
    worker = Worker(runs, tmp_path / "data", [Slot("cpu", "")], poll=0.05, warm=False,
                    say=lambda _text: None)
    real = {"register_worker": worker.queue.register_worker, "say": worker.say,
            "_start_templates": worker._start_templates}

    def then_sigterm(name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            result = real[name](*args, **kwargs)
            signal.raise_signal(signal.SIGTERM)
            return result
        return call

    if step == "write_pid_file":
        real_write = worker_module.atomic_write_bytes

        def write_then_sigterm(path: Path, data: bytes) -> None:
            real_write(path, data)
            signal.raise_signal(signal.SIGTERM)

        monkeypatch.setattr(worker_module, "atomic_write_bytes", write_then_sigterm)
    elif step == "register_worker":
        monkeypatch.setattr(worker.queue, step, then_sigterm(step))
    else:
        monkeypatch.setattr(worker, step, then_sigterm(step))
    def as_main_does(signum: int, _frame: object) -> None:  # `lab worker` runs inside main's
        raise lab_signals.Interrupted(signum)

    signal.signal(signal.SIGTERM, as_main_does)
    with pytest.raises(KeyboardInterrupt):
        worker.run()
    assert not pid_file(runs, worker.pid).exists()
    queue = JobQueue.open(runs)
    try:
        assert queue.workers() == []
    finally:
        queue.close()
