"""One GPU check of the whole lab, made to run once on a lent machine within a fixed budget.

`bash bench/gpu_check.sh` installs the carried wheels and calls this driver, which runs a fixed
plan of steps in order (facts, data import, CUDA tests, bench, three runs, Grad-CAM, a queued
job through a worker, a torchrun job). Every step runs its commands as subprocesses with the
step's own time limit; a step that fails or times out is recorded with its error and the next one
starts; a step is skipped with a note when too little of the global budget is left. After every
step `gpu_check.json` is rewritten in full (so a kill still leaves the results so far), and every
command's output goes to `gpu_check.log` as it comes.

`--dry-run` runs the same plan on the CPU, shrunk (16 px where the real run has 224, 32 px stays,
1 epoch, digits for the runs, 3 bench steps): it checks the driver itself, not the GPU.

Standard library only; the commands it runs are `python -m lab ...`, pytest and torchrun.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARBALL = REPO / "bench" / "carry" / "cifar10-jpeg.tar.xz"
JSON_NAME, LOG_NAME = "gpu_check.json", "gpu_check.log"
MAX_PNGS = 3  # the device tool brings back at most 8 files: the JSON, the log and these
SCRATCH_MARK = ".gpu_check_scratch"
STUDY_L3_224 = 0.6589  # the study's Level 3 test accuracy (224 px, 5 epochs)
L1_GOAL_S = 20.0  # Level 1 from scratch, 5 epochs at 224 px, end to end


class StepFailed(Exception):
    """A command of the step exited non-zero (or printed nothing usable)."""


class StepTimeout(Exception):
    """A command of the step ran past the step's limit and was killed."""


class SkipStep(Exception):
    """The step cannot run now (a step it needs did not finish, an option is missing, ...)."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached the driver: record what is running, then stop."""


# ---- the plan ---------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    title: str
    handler: Callable[[Check, Any, dict[str, Any]], None]  # gets the step + deadline
    limit: float  # seconds the step may take at most
    min_s: float  # skip the step when less than this is left of the budget
    argv: list[str] = field(default_factory=list)  # the step's main command (lab arguments)
    group: str | None = None  # steps sharing one time cap (the bench configurations)
    needs: tuple[str, ...] = ()  # steps that must have finished ok first
    skip: str | None = None  # why the step does not run in this mode
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mode:
    dry: bool

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    @property
    def big(self) -> str:  # the study's 224 px
        return "16" if self.dry else "224"

    @property
    def small(self) -> str:  # CIFAR's own 32 px
        return "32"

    @property
    def run_data(self) -> list[str]:  # the runs train on digits in a dry run: minutes, not hours
        return ["--dataset", "digits" if self.dry else "cifar10"]

    def epochs(self, n: int) -> list[str]:
        return ["--epochs", "1" if self.dry else str(n)]

    def batch(self, n: int) -> str:  # bf16 trains at ~15 img/s on a busy 2-core CPU
        return str(n // 32 if self.dry else n)


BENCH = [  # (batch, precision, channels_last, compile, references), most telling first
    (64, "fp32", False, False, True),  # the study's setting, beside the study's own pipeline
    (256, "bf16", True, False, True),
    (256, "fp32", False, False, False),
    (256, "bf16", False, False, False),
    (64, "bf16", False, False, False),
    (64, "bf16", True, False, False),
    (256, "bf16", True, True, False),
    (64, "bf16", True, True, False),
]


def plan(dry: bool) -> list[Step]:
    """The steps in order; a dry run has the same steps, shrunk, with the CUDA-only ones skipped."""
    m = Mode(dry)
    no_cuda = "dry-run: no CUDA" if dry else None

    def lim(real: float, dry_s: float) -> float:
        return float(dry_s if dry else real)

    steps = [
        Step("facts", "nvidia-smi, torch/CUDA facts, imports, lab doctor", step_facts,
             lim(60, 120), 5),
        Step("data_import", "lab data import of the carried CIFAR-10 JPEG copy", step_lab_json,
             lim(120, 180), 20, ["data", "import", str(TARBALL), "--json"],
             extra={"extract": extract_import}),
        Step("cuda_tests", "pytest -m cuda (the tests that need a GPU)", step_pytest,
             lim(120, 180), 20, ["-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                                 "tests/"]),
    ]
    for batch, precision, channels_last, compiled, refs in BENCH:
        name = (f"bench_b{batch}_{precision}" + ("_cl" if channels_last else "")
                + ("_compile" if compiled else ""))
        argv = ["bench", "--level", "1", "--image-size", m.big, "--batch-size", m.batch(batch),
                "--device", m.device, "--precision", precision, "--dataset", "cifar10", "--json"]
        argv += ["--channels-last"] if channels_last else []
        argv += ["--compile"] if compiled else []
        argv += ["--steps", "3", "--rounds", "1"] if dry else (
            ["--steps", "30", "--rounds", "2"] if refs else ["--steps", "30", "--rounds", "1"])
        argv += [] if refs else ["--no-references"]
        skip = None
        if dry and compiled:
            skip = "dry-run: torch.compile is timed on the GPU only"
        elif dry and precision == "bf16" and not channels_last:  # bf16+channels_last runs here
            skip = ("dry-run: a bf16 step without channels_last takes ~14 s on this CPU "
                    "(PyTorch's CPU bf16 convolutions); timed on the GPU only")
        steps.append(Step(name, f"lab bench, level 1 at {m.big} px, batch {m.batch(batch)}, "
                          f"{precision}"
                          + (", channels_last" if channels_last else "")
                          + (", torch.compile" if compiled else "")
                          + ("" if refs else ", engine only"),
                          step_bench, lim(150 if compiled else 75, 120),
                          lim(60 if compiled else 25, 10), argv, group="bench",
                          needs=("data_import",), skip=skip,
                          extra={"extract": extract_bench, "compile": compiled}))
    steps += [
        Step("run_l3_224", "lab run, Level 3 at 224 px, 5 epochs (the study's 65.89% row)",
             step_lab_json, lim(180, 240), lim(45, 20),
             ["run", "--level", "3", "--image-size", m.big, *m.epochs(5), *m.run_data,
              "--device", m.device, "--json"],
             needs=() if dry else ("data_import",), extra={"extract": extract_run}),
        Step("run_l3_tuned", "lab run, Level 3, the tuned recipe", step_lab_json,
             lim(90, 240), lim(25, 20),
             ["run", "--level", "3", "--recipe", "tuned", *m.run_data, "--device", m.device,
              "--json"] + (["--image-size", m.big, *m.epochs(1)] if dry else []),
             needs=() if dry else ("data_import",), extra={"extract": extract_run}),
        Step("run_l1_scratch", f"lab run, Level 1 from scratch at 224 px, 5 epochs "
             f"(goal: under {L1_GOAL_S:.0f} s end to end)", step_lab_json,
             lim(150, 300), lim(40, 20),
             ["run", "--level", "1", "--weights", "none", *m.epochs(5), "--image-size", m.big,
              *m.run_data, "--device", m.device, "--json"],
             needs=() if dry else ("data_import",),
             extra={"extract": extract_run, "goal_s": L1_GOAL_S}),
        Step("gradcam", "lab gradcam on the Level 3 run", step_gradcam, lim(60, 120), 15,
             ["gradcam", "RUN", "--device", m.device, "--json"], needs=("run_l3_224",)),
        Step("worker", "lab submit + lab worker --exit-when-idle, lab worker status meanwhile",
             step_worker, lim(120, 240), lim(30, 20),
             ["submit", "--level", "3", "--image-size", m.small, *m.epochs(1), *m.run_data,
              "--json"], needs=() if dry else ("data_import",)),
        Step("ddp", "torchrun, 1 process: an NCCL all-reduce + DDP step, then lab run under it"
             if not dry else "torchrun, 1 process: a gloo all-reduce + DDP step, then lab run",
             step_ddp, lim(100, 240), lim(25, 20),
             ["run", "--level", "3", "--image-size", m.small, *m.epochs(1), *m.run_data,
              "--device", m.device, "--json"],
             needs=() if dry else ("data_import",),
             extra={"backend": "gloo" if dry else "nccl"}),
    ]
    for step in steps:
        if no_cuda and step.name == "cuda_tests":
            step.title += f" ({no_cuda}: they run and skip)"
    return steps


GROUP_CAPS = {"bench": (150.0, 600.0)}  # (real, dry) seconds for all bench steps together


# ---- running commands -------------------------------------------------------------------------
def short(argv: list[str], n: int = 12) -> str:
    """A command line for the log and the JSON: a `python -c` script is shown as <script>."""
    return shlex.join("<script>" if "\n" in a or len(a) > 120 else a for a in argv[:n])


@dataclass
class Cmd:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr_tail: str
    seconds: float
    timed_out: bool

    def error(self) -> str:
        """The last lines the command printed: where lab puts its `error: ...` and hint."""
        text = self.stderr_tail.strip() or self.stdout.strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return "\n".join(lines[-6:])[-800:]


class Proc:
    """A subprocess in its own session: stderr copied to the log as it comes, stdout kept."""

    def __init__(self, check: Check, argv: list[str], log_stdout: bool = True) -> None:
        self.check, self.argv, self.log_stdout = check, argv, log_stdout
        self.t0 = time.monotonic()
        check.log(f"$ {short(argv, 40)}")
        self.popen = subprocess.Popen(argv, cwd=REPO, env=check.env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      start_new_session=True)
        self.out: list[bytes] = []
        self.err_tail: deque[bytes] = deque(maxlen=40)
        self.threads = [threading.Thread(target=self._pump, args=(self.popen.stdout, False),
                                         daemon=True),
                        threading.Thread(target=self._pump, args=(self.popen.stderr, True),
                                         daemon=True)]
        for t in self.threads:
            t.start()
        check.children.add(self)

    def _pump(self, stream: Any, is_err: bool) -> None:
        for line in iter(stream.readline, b""):
            if is_err:
                self.err_tail.append(line)
                self.check.log_bytes(line)
            else:
                self.out.append(line)

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGTERM to the whole process group (lab saves a checkpoint), SIGKILL 10 s later."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def wait(self, deadline: float) -> Cmd:
        timed_out = False
        try:
            self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.check.log(f"!! time limit reached: killing {short(self.argv, 6)} ...")
            self.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # leftovers of a finished command
        for t in self.threads:
            t.join(5.0)
        self.check.children.discard(self)
        stdout = b"".join(self.out).decode(errors="replace")
        seconds = round(time.monotonic() - self.t0, 2)
        if self.log_stdout and stdout.strip():
            shown = stdout if len(stdout) <= 20_000 else stdout[:20_000] + "\n[... cut ...]\n"
            self.check.log("--- stdout ---\n" + shown.rstrip())
        self.check.log(f"-> rc {self.popen.returncode} in {seconds:.1f} s"
                       + (" (killed: time limit)" if timed_out else ""))
        return Cmd(self.argv, self.popen.returncode, stdout,
                   b"".join(self.err_tail).decode(errors="replace"), seconds, timed_out)


# ---- GPU memory sampler -----------------------------------------------------------------------
class Sampler:
    """Peak GPU memory and utilisation from one `nvidia-smi -lms` loop, read in a thread."""

    QUERY = ["--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits",
             "-lms", "500"]

    def __init__(self, argv: list[str] | None) -> None:
        self.lock = threading.Lock()
        self.mem: float | None = None
        self.util: float | None = None
        self.samples = 0
        self.popen: subprocess.Popen | None = None
        if argv:
            try:
                self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL, text=True)
            except OSError:
                self.popen = None
            else:
                threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def nvidia_smi(cls) -> Sampler:
        smi = shutil.which("nvidia-smi")
        return cls([smi, *cls.QUERY] if smi else None)

    def _read(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                mem, util = float(parts[0]), float(parts[1])
            except (ValueError, IndexError):
                continue
            with self.lock:
                self.samples += 1
                self.mem = mem if self.mem is None else max(self.mem, mem)
                self.util = util if self.util is None else max(self.util, util)

    def reset(self) -> None:
        with self.lock:
            self.mem = self.util = None
            self.samples = 0

    def peak(self) -> dict[str, Any]:
        with self.lock:
            if self.popen is None:
                return {}
            return {"gpu_peak_mem_mib": self.mem, "gpu_max_util_pct": self.util,
                    "gpu_samples": self.samples}

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(3)


# ---- the driver -------------------------------------------------------------------------------
class Check:
    def __init__(self, out: Path, scratch: Path, dry: bool, budget: float,
                 t0_wall: float | None = None, sampler: Sampler | None = None) -> None:
        self.out, self.scratch, self.dry, self.budget = out, scratch, dry, budget
        self.out.mkdir(parents=True, exist_ok=True)
        started = t0_wall if t0_wall is not None else time.time()
        self.end = time.monotonic() + budget - max(0.0, time.time() - started)
        self.logf = open(out / LOG_NAME, "ab", buffering=0)  # noqa: SIM115 - open for the run
        self.log_lock = threading.Lock()
        self.children: set[Proc] = set()
        self.sampler = sampler or Sampler(None)
        self.env = self._env()
        self.group_used: dict[str, float] = {}
        self.results: dict[str, Any] = {
            "schema": 1, "mode": "dry-run" if dry else "real",
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "budget_s": budget, "elapsed_s": 0.0, "finished": False,
            "scratch": str(scratch), "summary": [], "steps": {},
        }

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(path)), PYTHONUNBUFFERED="1",
                   NO_COLOR="1", COLUMNS="120", LAB_OFFLINE="1")
        env.setdefault("LAB_RUNS_DIR", str(self.scratch / "runs"))
        env.setdefault("LAB_DATA_DIR", str(self.scratch / "data"))
        env.setdefault("TORCH_HOME", str(self.scratch / "torch"))
        if self.dry:  # two busy cores: one thread each is 3x faster than two fighting ones
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    # -- time -------------------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return round(self.budget - self.remaining(), 1)

    # -- output -----------------------------------------------------------------------------------
    def log_bytes(self, data: bytes) -> None:
        with self.log_lock:
            self.logf.write(data)

    def log(self, text: str) -> None:
        self.log_bytes((text.rstrip("\n") + "\n").encode())

    def save(self) -> None:
        """The whole JSON, written atomically: a kill never leaves half a file."""
        self.results["elapsed_s"] = self.elapsed()
        self.results["summary"] = [summary_line(n, r)
                                   for n, r in self.results["steps"].items()]
        tmp = self.out / (JSON_NAME + ".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        os.replace(tmp, self.out / JSON_NAME)

    # -- commands ---------------------------------------------------------------------------------
    def lab(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lab", *args]

    def start(self, argv: list[str], log_stdout: bool = True) -> Proc:
        return Proc(self, argv, log_stdout)

    def sh(self, argv: list[str], deadline: float, ok: bool = True) -> Cmd:
        """Run a command to its end or the deadline; `ok` raises unless it exits 0."""
        if deadline - time.monotonic() < 0.5:
            raise StepTimeout(f"no time left for {short(argv, 6)}")
        cmd = self.start(argv).wait(deadline)
        if cmd.timed_out:
            raise StepTimeout(f"killed after {cmd.seconds:.0f} s (its limit): {short(argv, 8)}")
        if ok and cmd.rc != 0:
            raise StepFailed(f"exit {cmd.rc}: {cmd.error() or '(it printed nothing)'}")
        return cmd

    def close(self) -> None:
        self.kill_children()
        self.logf.close()

    def kill_children(self) -> None:
        for proc in list(self.children):
            proc.kill()
            self.children.discard(proc)

    # -- steps ------------------------------------------------------------------------------------
    def run(self, steps: list[Step]) -> dict[str, Any]:
        for step in steps:
            self.results["steps"][step.name] = {"title": step.title, "status": "pending"}
        self.save()
        for step in steps:
            self.run_step(step)
        self.results["finished"] = True
        self.save()
        return self.results

    def _why_skip(self, step: Step) -> str | None:
        if step.skip:
            return step.skip
        for need in step.needs:
            state = self.results["steps"].get(need, {}).get("status")
            if state != "ok":
                return f"needs {need}, which is {state or 'not planned'}"
        left = self.remaining()
        if left < step.min_s:
            return (f"only {max(0.0, left):.0f} s of the {self.budget:.0f} s budget left "
                    f"(the step needs {step.min_s:.0f} s)")
        if step.group:
            cap = GROUP_CAPS.get(step.group, (1e9, 1e9))[1 if self.dry else 0]
            used = self.group_used.get(step.group, 0.0)
            if cap - used < step.min_s:
                return f"the {step.group} steps used {used:.0f} s of their {cap:.0f} s"
        return None

    def run_step(self, step: Step) -> None:
        rec = self.results["steps"][step.name]
        why = self._why_skip(step)
        if why:
            rec.update(status="skipped", note=why)
            self.log(f"\n=== {step.name}: skipped: {why}")
            self.save()
            print(f"[{self.elapsed():6.1f}s] {step.name}: skipped ({why})", flush=True)
            return
        limit = min(step.limit, self.remaining())
        if step.group:
            cap = GROUP_CAPS.get(step.group, (1e9, 1e9))[1 if self.dry else 0]
            limit = min(limit, cap - self.group_used.get(step.group, 0.0))
        rec.update(status="running", limit_s=round(limit, 1))
        self.log(f"\n=== {step.name}: {step.title} (limit {limit:.0f} s, "
                 f"{self.remaining():.0f} s of the budget left)")
        self.save()
        self.sampler.reset()
        fig: dict[str, Any] = {}
        t0 = time.monotonic()
        deadline = t0 + limit
        try:
            step.handler(self, _Bound(step, deadline), fig)
            status = "ok"
        except SkipStep as exc:
            status, fig["note"] = "skipped", str(exc)
        except StepTimeout as exc:
            status, fig["error"] = "timeout", str(exc)
        except StepFailed as exc:
            status, fig["error"] = "failed", str(exc)
        except Interrupted as exc:
            self.kill_children()
            rec.update(fig, status="interrupted", note=f"{exc} reached the driver",
                       seconds=round(time.monotonic() - t0, 1), **self.sampler.peak())
            self.results["interrupted"] = f"{exc} during {step.name}"
            self.save()
            raise
        except Exception as exc:  # noqa: BLE001 - a bug of this driver must not stop the others
            status, fig["error"] = "failed", f"driver: {type(exc).__name__}: {exc}"
        seconds = round(time.monotonic() - t0, 1)
        if step.group:
            self.group_used[step.group] = self.group_used.get(step.group, 0.0) + seconds
        rec.update(fig, status=status, seconds=seconds, **self.sampler.peak())
        self.log(f"=== {step.name}: {status} in {seconds:.1f} s"
                 + (f": {fig.get('error') or fig.get('note')}" if status != "ok" else ""))
        self.save()
        print(f"[{self.elapsed():6.1f}s] {step.name}: {status} in {seconds:.1f} s"
              + (f"  {fig['key']}" if fig.get("key") else "")
              + (f"  ({fig.get('error') or fig.get('note')})" if status != "ok" else ""),
              flush=True)


class _Bound:
    """A step with its deadline, as the handlers see it."""

    def __init__(self, step: Step, deadline: float) -> None:
        self.step, self.deadline = step, deadline

    def __getattr__(self, name: str) -> Any:
        return getattr(self.step, name)


def summary_line(name: str, rec: dict[str, Any]) -> str:
    status = rec.get("status", "?")
    line = f"{name}: {status}"
    if "seconds" in rec:
        line += f" {rec['seconds']:.0f}s"
    if rec.get("key"):
        line += f" | {rec['key']}"
    if rec.get("gpu_peak_mem_mib") is not None:
        line += f" | peak {rec['gpu_peak_mem_mib']:.0f} MiB"
    if status not in ("ok", "pending", "running"):
        why = str(rec.get("error") or rec.get("note") or "")
        line += f" | {why.splitlines()[-1][:160] if why else ''}"
    return line


def parse_json(text: str) -> Any:
    """The JSON document a `--json` command printed (anything before it ignored)."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise StepFailed("printed no JSON")
    try:
        return json.loads(text[min(starts):])
    except json.JSONDecodeError as exc:
        raise StepFailed(f"printed JSON that does not parse: {exc}") from None


# ---- step handlers ----------------------------------------------------------------------------
TORCH_FACTS = r"""
import importlib, json, platform, sys
import torch
d = {"python": sys.version.split()[0], "platform": platform.platform(),
     "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
     "device_count": torch.cuda.device_count(), "cpu_count": __import__("os").cpu_count()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    d.update(device_name=p.name, capability=f"{p.major}.{p.minor}",
             total_memory_gib=round(p.total_memory / 2**30, 1),
             multiprocessors=p.multi_processor_count,
             bf16_supported=torch.cuda.is_bf16_supported(),
             nccl=".".join(map(str, torch.cuda.nccl.version())))
mods = {}
for m in ["torchvision", "numpy", "textual", "plotext", "pytorch_grad_cam", "ttach",
          "textual_image", "pynvml", "cv2", "sklearn", "matplotlib", "rich", "typer", "pytest",
          "triton"]:
    try:
        mod = importlib.import_module(m)
        mods[m] = str(getattr(mod, "__version__", "ok"))
    except Exception as exc:
        mods[m] = f"MISSING {type(exc).__name__}: {exc}"[:160]
d["modules"] = mods
print(json.dumps(d))
"""


def step_facts(ck: Check, step: Any, fig: dict[str, Any]) -> None:
    smi = shutil.which("nvidia-smi")
    if smi:
        cmd = ck.sh([smi, "--query-gpu=name,driver_version,memory.total,memory.used,"
                     "clocks.max.sm,power.limit", "--format=csv,noheader"], step.deadline,
                    ok=False)
        fig["nvidia_smi"] = cmd.stdout.strip() if cmd.rc == 0 else f"rc {cmd.rc}: {cmd.error()}"
        ck.sh([smi], step.deadline, ok=False)  # the plain table, for the log
    else:
        fig["nvidia_smi"] = "not found" + (" (dry-run: no CUDA)" if ck.dry else "")
    facts = parse_json(ck.sh([sys.executable, "-c", TORCH_FACTS], step.deadline).stdout)
    fig["torch"] = facts
    doctor = ck.sh(ck.lab("doctor", "--json"), step.deadline, ok=False)
    fig["doctor"] = parse_json(doctor.stdout) if doctor.rc == 0 else f"rc {doctor.rc}"
    missing = [m for m, v in facts["modules"].items() if v.startswith("MISSING")]
    fig["missing_modules"] = missing
    fig["key"] = (f"{facts.get('device_name', 'no GPU')}, torch {facts['torch']}, "
                  f"bf16 {facts.get('bf16_supported', '-')}"
                  + (f", missing {','.join(missing)}" if missing else ""))


def step_lab_json(ck: Check, step: Any, fig: dict[str, Any]) -> None:
    fig["command"] = "lab " + shlex.join(step.argv)
    cmd = ck.sh(ck.lab(*step.argv), step.deadline)
    fig["wall_s"] = cmd.seconds
    step.extra["extract"](parse_json(cmd.stdout), fig)
    goal = step.extra.get("goal_s")
    if goal is not None:
        fig["goal_s"] = goal
        fig["goal_met"] = cmd.seconds < goal
        fig["key"] += f", wall {cmd.seconds:.1f} s (goal < {goal:.0f} s)"


def step_bench(ck: Check, step: Any, fig: dict[str, Any]) -> None:
    if step.extra.get("compile") and not bench_has_compile(ck, step.deadline):
        raise SkipStep("`lab bench` has no --compile option (yet)")
    step_lab_json(ck, step, fig)


_HELP_CACHE: dict[str, bool] = {}


def bench_has_compile(ck: Check, deadline: float) -> bool:
    if "bench" not in _HELP_CACHE:
        cmd = ck.start(ck.lab("bench", "--help"), log_stdout=False).wait(deadline)
        _HELP_CACHE["bench"] = "--compile" in cmd.stdout
    return _HELP_CACHE["bench"]


def step_pytest(ck: Check, step: Any, fig: dict[str, Any]) -> None:
    fig["command"] = "python " + shlex.join(step.argv)
    cmd = ck.sh([sys.executable, *step.argv], step.deadline, ok=False)
    counts = {k: int(n) for n, k in re.findall(
        r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", cmd.stdout)}
    fig["counts"] = counts
    fig["key"] = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no summary line"
    if ck.dry:
        fig["note"] = "dry-run: no CUDA, so every selected test skips"
    if cmd.rc not in (0,):
        raise StepFailed(f"pytest exit {cmd.rc}: {fig['key']}\n{cmd.error()}")
    if not ck.dry and counts.get("passed", 0) == 0:
        raise StepFailed(f"no CUDA test passed ({fig['key']})")


def step_gradcam(ck: Check, step: Any, fig: dict[str, Any]) -> None:
    run_id = ck.results["steps"].get("run_l3_224", {}).get("run_id")
    if not run_id:
        raise SkipStep("no Level 3 run to explain")
    argv = [run_id if a == "RUN" else a for a in step.argv]
    fig["command"] = "lab " + shlex.join(argv)
    cmd = ck.sh(ck.lab(*argv), step.deadline)
    gallery = parse_json(cmd.stdout)
    folder = Path(ck.env["LAB_RUNS_DIR"]) / run_id / "gradcam" / str(gallery.get("name"))
    pngs = sorted(folder.glob("*.png"))
    fig.update(gallery=gallery.get("name"), method=gallery.get("method"),
               layer=gallery.get("layer"), items=len(gallery.get("items", [])),
               png_count=len(pngs), wall_s=cmd.seconds)
    wrong = [p for p in pngs if "wrong" in p.name]
    right = [p for p in pngs if "wrong" not in p.name]
    picked = (right[:2] + wrong[:1] + right[2:])[:MAX_PNGS]
    fig["copied"] = []
    for i, src in enumerate(picked, 1):
        dst = ck.out / f"gradcam_{i}.png"
        shutil.copyfile(src, dst)
        fig["copied"].append(f"{dst.name} <- {src.name}")
    fig["key"] = f"{len(pngs)} PNGs ({fig['items']} items) in {cmd.seconds:.1f} s"
    if not pngs:
        raise StepFailed(f"no PNG written in {folder}")


NVML_PROBE = ("import json; from tui.device import DeviceProbe; p = DeviceProbe(); p.sample(); "
              "import time; time.sleep(0.5); print(json.dumps([s.line() for s in p.sample()]))")


def step_worker(ck: Check, step: Any, fig: dict[str, Any]) -> None:
    fig["command"] = "lab " + shlex.join(step.argv)
    jobs = parse_json(ck.sh(ck.lab(*step.argv), step.deadline).stdout)
    job_id = jobs[0]["id"]
    fig["job"] = job_id
    t0 = time.monotonic()
    worker = ck.start(ck.lab("worker", "--exit-when-idle", "--poll", "0.5", "--heartbeat", "1"))
    snapshots: list[Any] = []
    while worker.running() and time.monotonic() < step.deadline - 2 and len(snapshots) < 2:
        time.sleep(1.0)
        status = ck.start(ck.lab("worker", "status", "--json")).wait(step.deadline)
        with contextlib.suppress(StepFailed):
            rows = parse_json(status.stdout) if status.rc == 0 else []
            if any(r.get("jobs") for r in rows):
                snapshots.append({"at_s": round(time.monotonic() - t0, 1), "workers": rows})
                if len(snapshots) == 1:  # the console's device panel, through NVML if present
                    probe = ck.start([sys.executable, "-c", NVML_PROBE]).wait(step.deadline)
                    fig["device_panel"] = (parse_json(probe.stdout) if probe.rc == 0
                                           else f"rc {probe.rc}: {probe.error()}")
    fig["worker_status"] = snapshots
    done = worker.wait(step.deadline)
    fig["worker_rc"], fig["wall_s"] = done.rc, round(time.monotonic() - t0, 1)
    if done.timed_out:
        raise StepTimeout(f"the worker was still running after {done.seconds:.0f} s")
    job = next((j for j in parse_json(ck.sh(ck.lab("queue", "--json"), step.deadline).stdout)
                if j["id"] == job_id), {})
    fig.update(job_state=job.get("state"), run_id=job.get("run_id"), job_error=job.get("error"),
               slot=job.get("gpu"))
    result_path = Path(ck.env["LAB_RUNS_DIR"]) / str(job.get("run_id")) / "result.json"
    if result_path.is_file():
        extract_run(json.loads(result_path.read_text()), fig)
    fig["key"] = (f"job {job_id} {job.get('state')} on {job.get('gpu')}, worker rc {done.rc}, "
                  f"{len(snapshots)} status snapshot(s) with the job running")
    if done.rc != 0 or job.get("state") != "done":
        raise StepFailed(f"job {job_id} is {job.get('state')} ({job.get('error')}), "
                         f"worker exit {done.rc}")
    if not snapshots:
        fig["note"] = "the job finished before `lab worker status` saw it running"


def step_ddp(ck: Check, step: Any, fig: dict[str, Any]) -> None:
    backend = step.extra["backend"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "1"]
    smoke = ck.sh([*torchrun, str(Path(__file__).resolve()), "--collective", backend],
                  step.deadline)
    fig["collective"] = parse_json(smoke.stdout)
    fig["command"] = "torchrun --standalone --nproc-per-node 1 -m lab " + shlex.join(step.argv)
    cmd = ck.sh([*torchrun, "-m", "lab", *step.argv], step.deadline)
    extract_run(parse_json(cmd.stdout), fig)
    fig["wall_s"] = cmd.seconds
    fig["note"] = ("at world size 1 lab trains in-process (distributed.Dist.active is "
                   "world > 1): the lab run checks torchrun's environment, not DDP; the "
                   f"{backend} all-reduce + DDP step above is the collective check")
    fig["key"] = (f"{backend} all-reduce {fig['collective'].get('all_reduce_ok')}, "
                  f"DDP step {fig['collective'].get('ddp_backward_ok')}; " + fig["key"])


# ---- what each JSON gives -----------------------------------------------------------------------
def extract_import(d: dict[str, Any], fig: dict[str, Any]) -> None:
    fig.update(name=d.get("name"), counts=d.get("counts"), official=d.get("official"),
               image_size=d.get("image_size"), data_sha256=d.get("data_sha256"))
    counts = d.get("counts") or {}
    fig["key"] = (f"{d.get('name')}: {counts.get('train')} train + {counts.get('test')} test, "
                  f"{fig.get('wall_s', 0):.1f} s")


def extract_bench(d: dict[str, Any], fig: dict[str, Any]) -> None:
    fig.update({k: v for k, v in d.items() if k != "rounds"}, rounds=d.get("rounds"))
    key = f"engine {d.get('engine_images_per_s', 0):,.0f} img/s"
    if "limit_images_per_s" in d:
        key += (f", limit {d['limit_images_per_s']:,.0f}, study "
                f"{d.get('study_images_per_s', 0):,.0f}")
    if d.get("peak_memory_mb") is not None:
        key += f", torch peak {d['peak_memory_mb']:,.0f} MB"
    fig["key"] = key


def extract_run(d: dict[str, Any], fig: dict[str, Any]) -> None:
    timings, throughput = d.get("timings", {}), d.get("throughput", {})
    fig.update(run_id=d.get("run_id"), level=d.get("level"), model=d.get("model"),
               dataset=d.get("dataset"), device=d.get("device"), precision=d.get("precision"),
               epochs=d.get("epochs"), test_acc=d.get("test_acc"),
               best_val_acc=d.get("best_val_acc"), split=d.get("split"), timings=timings,
               throughput=throughput, notes=d.get("notes"))
    acc = d.get("test_acc")
    fig["key"] = (f"test {100 * acc:.2f}%" if isinstance(acc, (int, float)) else "test ?")
    if d.get("level") == 3 and fig.get("dataset") == "cifar10" and d.get("epochs") == 5:
        fig["study_test_acc"] = STUDY_L3_224
        fig["key"] += f" (study {100 * STUDY_L3_224:.2f}%)"
    fig["key"] += (f", train {throughput.get('train_images_per_s', 0):,.0f} img/s, "
                   f"total {timings.get('total_seconds', 0):.1f} s")


# ---- the collective check (run under torchrun by step_ddp) --------------------------------------
def collective(backend: str) -> int:
    import torch
    import torch.distributed as td

    t0 = time.perf_counter()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = backend == "nccl"
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    td.init_process_group(backend, device_id=device if cuda else None)
    x = torch.ones(1 << 20, device=device)
    td.all_reduce(x)
    ok = bool((x == td.get_world_size()).all().item())
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Linear(64, 10).to(device), device_ids=[local] if cuda else None)
    model(torch.randn(32, 64, device=device)).sum().backward()
    grad_ok = all(p.grad is not None for p in model.parameters())
    out = {"backend": td.get_backend(), "world": td.get_world_size(), "all_reduce_ok": ok,
           "ddp_backward_ok": grad_ok, "device": str(device),
           "seconds": round(time.perf_counter() - t0, 2)}
    if cuda:
        out["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    td.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(out), flush=True)
    return 0 if ok and grad_ok else 1


# ---- main ---------------------------------------------------------------------------------------
def prepare_scratch(scratch: Path) -> None:
    """A fresh scratch folder; one without our mark is never emptied (a mistyped path)."""
    if scratch.exists() and any(scratch.iterdir()):
        if not (scratch / SCRATCH_MARK).exists():
            raise SystemExit(f"gpu_check: {scratch} is not empty and not a gpu_check scratch "
                             "folder; pass --scratch DIR (a new or former scratch folder)")
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / SCRATCH_MARK).write_text("made by bench/gpu_check.py; emptied on each run\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or
                                                     "/tmp/gpu_check_out"))
    ap.add_argument("--dry-run", action="store_true", help="the same plan, shrunk, on the CPU")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for everything, counted from $GPU_CHECK_T0 when set "
                         "(default 540; 1200 in a dry run)")
    ap.add_argument("--scratch", type=Path,
                    default=Path(os.environ.get("GPU_CHECK_SCRATCH") or "/tmp/gpu_check"))
    ap.add_argument("--only", default="", help="comma-separated step names (others skipped)")
    ap.add_argument("--collective", choices=["nccl", "gloo"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.collective:
        return collective(args.collective)

    budget = args.budget if args.budget is not None else (1200.0 if args.dry_run else 540.0)
    t0 = os.environ.get("GPU_CHECK_T0")
    prepare_scratch(args.scratch)
    steps = plan(args.dry_run)
    if args.only:
        wanted = set(args.only.split(","))
        for s in steps:
            if s.name not in wanted:
                s.skip = s.skip or "not in --only"
    sampler = Sampler.nvidia_smi()
    ck = Check(args.out, args.scratch, args.dry_run, budget, float(t0) if t0 else None, sampler)
    ck.log(f"\n##### gpu_check.py {ck.results['mode']} {ck.results['started']}: budget "
           f"{budget:.0f} s ({ck.remaining():.0f} s left), out {args.out}, scratch "
           f"{args.scratch}, python {sys.executable}")

    def on_signal(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ck.run(steps)
    except Interrupted as exc:
        ck.results.setdefault("interrupted", f"{exc} between steps")
        ck.save()
        ck.log(f"!! interrupted ({exc}); results so far are in {JSON_NAME}")
        return 143
    finally:
        sampler.stop()
        ck.close()
    bad = [n for n, r in ck.results["steps"].items() if r["status"] in ("failed", "timeout")]
    print(f"gpu_check: {len(ck.results['steps']) - len(bad)} steps ok or skipped, "
          f"{len(bad)} failed ({', '.join(bad) or '-'}); {ck.elapsed():.0f} s; "
          f"see {args.out / JSON_NAME}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
