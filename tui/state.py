"""The console's own memory across restarts: marks, sort, theme, the new-job dialog's last values.

It lives beside the user's config (``$XDG_CONFIG_HOME/lab/console.json``, or ``LAB_STATE_FILE``),
never in the runs directory: runs dirs are shared between people and machines, preferences are not.
Reading never fails the console: a missing, unreadable or corrupt file is an empty state, and a
write that fails (read-only home) is dropped, because losing a preference must not cost a session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.paths import user_path
from lab.runs.store import atomic_write_json

VERSION = 1


def state_path() -> Path:
    return user_path("LAB_STATE_FILE", "XDG_CONFIG_HOME", ".config", "lab", "console.json")


def load_state(path: Path | None = None) -> dict[str, Any]:
    """Every section the file holds; ``{}`` for anything but a well-formed file of this version."""
    path = path or state_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}
    sections = data.get("sections")
    if not isinstance(sections, dict):
        return {}
    return {k: v for k, v in sections.items() if isinstance(k, str)}


def load_section(name: str, path: Path | None = None) -> dict[str, Any]:
    section = load_state(path).get(name)
    return section if isinstance(section, dict) else {}


def save_section(name: str, values: dict[str, Any], path: Path | None = None) -> bool:
    """Replace one section, keeping the others; False when the file could not be written."""
    path = path or state_path()
    sections = load_state(path)
    sections[name] = values
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"version": VERSION, "sections": sections})
    except (OSError, TypeError, ValueError):
        return False
    return True
