"""Sizes on disk as people read them, one spelling for the CLI and the console."""

from __future__ import annotations

_UNITS = ("B", "kB", "MB", "GB", "TB")


def bytes_text(n: int | None) -> str:
    """Decimal units (as `du --si` and file managers), short enough for a table column:
    1,234,567 -> "1.2 MB", 134,217,728 -> "134 MB"; None -> "–"."""
    if n is None:
        return "–"
    value, unit = float(n), 0
    while abs(value) >= 999.5 and unit < len(_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    digits = 1 if unit and abs(value) < 9.95 else 0
    return f"{value:.{digits}f} {_UNITS[unit]}"
