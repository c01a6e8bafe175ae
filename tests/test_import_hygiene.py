"""The engine stays headless, and the CLI answers `--help` without importing torch."""

from __future__ import annotations

import subprocess
import sys


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


# Every module of the engine, found on disk (a new module is checked without being listed),
# imported one after another in one interpreter; the first to pull in Textual is named.
_EVERY_MODULE = """
import pkgutil, sys
import lab
names = sorted(m.name for m in pkgutil.walk_packages(lab.__path__, "lab.")
               if m.name != "lab.__main__")
for name in names:
    __import__(name)
    bad = [m for m in sys.modules if m == "textual" or m.startswith(("textual.", "tui"))]
    if bad:
        print("OFFENDER", name, bad[0])
        break
print("CHECKED", len(names), " ".join(names))
"""


def test_no_engine_module_imports_textual() -> None:
    out = subprocess.run([sys.executable, "-c", _EVERY_MODULE], capture_output=True, text=True,
                         check=True).stdout
    assert "OFFENDER" not in out, out
    checked = out.split("CHECKED ")[1].split()
    assert int(checked[0]) >= 40 and {"lab.core.loop", "lab.core.collectives",
                                      "lab.runs.checkpoint", "lab.queue.slurm",
                                      "lab.cli.run"} <= set(checked[1:])


def test_cli_import_is_light() -> None:
    loaded = _modules_after_import("lab.cli")
    assert "torch" not in loaded and "sklearn" not in loaded


def test_a_run_on_digits_never_imports_scikit_learn() -> None:
    """The data (read from its CSV) and the scores (NumPy) without it: the import cost each
    run, job and rank process about 2 s of CPU before its first step."""
    code = ("import sys, numpy as np; from lab.data import load_dataset; "
            "from lab.core.metrics import classification_summary; "
            "d = load_dataset('digits', None); "
            "classification_summary(d.train_y, d.train_y, d.classes); "
            "print('\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sklearn" not in out.stdout.split() and "scipy" not in out.stdout.split()
