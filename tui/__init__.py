"""The Textual console (`lab tui`): a client of the engine's run records and job queue."""

from __future__ import annotations

from typing import Any

__all__ = ["make_app"]


def __getattr__(name: str) -> Any:
    if name == "make_app":  # lazy: `import tui.model` stays free of Textual's start-up cost
        from tui.app import make_app

        return make_app
    raise AttributeError(name)
