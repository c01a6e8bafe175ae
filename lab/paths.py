"""Default places on disk, from the environment, without importing the layer that owns them:
`lab tui` needs the data cache's path at start, not numpy and PIL with `lab.data`."""

from __future__ import annotations

import os
from pathlib import Path


def user_path(explicit: str, xdg: str, fallback: str, *parts: str) -> Path:
    """`$explicit` if set; else `parts` under `$xdg` (an XDG base directory), or under
    `~/fallback` where that is not set."""
    given = os.environ.get(explicit)
    if given:
        return Path(given).expanduser()
    base = os.environ.get(xdg)
    return (Path(base).expanduser() if base else Path.home() / fallback).joinpath(*parts)


def default_data_dir() -> Path:
    """Where data sets live unless a command says otherwise; a cache, so XDG's cache dir."""
    return user_path("LAB_DATA_DIR", "XDG_CACHE_HOME", ".cache", "lab", "data")
