"""The engine stays headless, and the CLI answers `--help` without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINE = ["lab", "lab.config", "lab.levels", "lab.models", "lab.train", "lab.runs", "lab.engine",
          "lab.metrics", "lab.report", "lab.plots", "lab.data", "lab.data.loader", "lab.cli",
          "lab.queue", "lab.worker", "lab.jobrun", "lab.jobs", "lab.slurm"]


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ENGINE)
def test_engine_never_imports_textual(module: str) -> None:
    loaded = _modules_after_import(module)
    assert module in loaded
    assert not {m for m in loaded if m == "textual" or m.startswith(("textual.", "tui"))}


def test_cli_import_is_light() -> None:
    loaded = _modules_after_import("lab.cli")
    assert "torch" not in loaded and "sklearn" not in loaded
