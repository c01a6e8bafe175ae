"""A run's list of Grad-CAM galleries (`runs/<id>/gradcam/index.json`), read without torch so
the CLI, the report and the console can list galleries cheaply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.errors import NotFoundError


def read_galleries(gradcam_dir: Path) -> list[dict[str, Any]]:
    """The galleries of a run, newest first; none yet is an empty list."""
    path = Path(gradcam_dir) / "index.json"
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()).get("galleries", []))
    except (ValueError, RecursionError, AttributeError, TypeError):
        raise NotFoundError(f"{path} is corrupt", hint="run `lab gradcam RUN` again") from None
