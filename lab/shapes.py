"""Shapes of the JSON records, checked where they are read.

A record on disk (a run's status or result, a gallery index, a data set's manifest) may have been
edited by hand, cut short, or written by another program. Every reader checks it against its
shape here first, so a wrong type becomes one `DataError` naming the file and the field, never an
AttributeError or a format error deep inside a view. A shape names the fields a reader uses and
their types; fields it does not name are allowed (a newer lab may write more).

Numbers are bounded as well as typed: an integer must fit in 64 bits and a float must be finite,
so formatting or converting any checked number cannot overflow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.errors import DataError

MAX_DEPTH = 64  # the records lab writes nest 4 levels at most
_INT_LIMIT = 2**63


class Shape:
    """What a value must be. `why` says why it is not, as a reason about the value itself
    ("is a string, not a number"); `where` adds the path of a nested field ("per_class[2].f1")."""

    def why(self, value: Any) -> str | None:  # pragma: no cover - every shape overrides it
        raise NotImplementedError

    def where(self, value: Any) -> tuple[str, str] | None:
        """(path inside `value`, reason), or None when `value` has this shape."""
        why = self.why(value)
        return None if why is None else ("", why)


class Int(Shape):
    """An integer (not a boolean) within [lo, hi]; by default any that fits in 64 bits."""

    def __init__(self, lo: int = -_INT_LIMIT, hi: int = _INT_LIMIT - 1) -> None:
        self.lo, self.hi = lo, hi

    def why(self, value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"is {kind(value)}, not an integer"
        if not self.lo <= value <= self.hi:
            return f"is out of range ({self.lo}..{self.hi})"
        return None


class _Num(Shape):
    def why(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"is {kind(value)}, not a number"
        if isinstance(value, int) and not -_INT_LIMIT <= value < _INT_LIMIT:
            return "is out of range"
        if isinstance(value, float) and not math.isfinite(value):
            return "is not a finite number"
        return None


class _Type(Shape):
    def __init__(self, python_type: type, name: str) -> None:
        self.python_type, self.name = python_type, name

    def why(self, value: Any) -> str | None:
        return None if isinstance(value, self.python_type) else f"is {kind(value)}, not {self.name}"


class _Any(Shape):
    def why(self, value: Any) -> str | None:
        return None


class Pattern(Shape):
    """A string that matches `regex` (a name used as a file or folder name, say)."""

    def __init__(self, regex: str, what: str) -> None:
        self.regex, self.what = re.compile(regex), what

    def why(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"is {kind(value)}, not a string"
        return None if self.regex.fullmatch(value) else f"is not {self.what}"


class Maybe(Shape):
    """`shape` or null."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    def why(self, value: Any) -> str | None:
        return None if value is None else self.shape.why(value)

    def where(self, value: Any) -> tuple[str, str] | None:
        return None if value is None else self.shape.where(value)


class OneOf(Shape):
    """One of a few strings (a state, a method)."""

    def __init__(self, *values: str) -> None:
        self.values = values

    def why(self, value: Any) -> str | None:
        if value in self.values and isinstance(value, str):
            return None
        shown = repr(value)[:40] if isinstance(value, str) else kind(value)
        return f"is {shown}, not one of {', '.join(self.values)}"


class ListOf(Shape):
    def __init__(self, item: Shape, min_len: int = 0, max_len: int | None = None) -> None:
        self.item, self.min_len, self.max_len = item, min_len, max_len

    def why(self, value: Any) -> str | None:
        found = self.where(value)
        return None if found is None else " ".join(filter(None, found))

    def where(self, value: Any) -> tuple[str, str] | None:
        if not isinstance(value, list):
            return "", f"is {kind(value)}, not a list"
        if len(value) < self.min_len:
            return "", f"has {len(value)} item(s), fewer than {self.min_len}"
        if self.max_len is not None and len(value) > self.max_len:
            return "", f"has {len(value)} item(s), more than {self.max_len}"
        for i, item in enumerate(value):
            found = self.item.where(item)
            if found is not None:
                return _join(f"[{i}]", found)
        return None


class Obj(Shape):
    """An object with `required` and `optional` fields of the given shapes; others allowed."""

    def __init__(self, required: Mapping[str, Shape] | None = None,
                 optional: Mapping[str, Shape] | None = None) -> None:
        self.required, self.optional = dict(required or {}), dict(optional or {})

    def why(self, value: Any) -> str | None:
        found = self.where(value)
        return None if found is None else " ".join(filter(None, found))

    def where(self, value: Any) -> tuple[str, str] | None:
        if not isinstance(value, dict):
            return "", f"is {kind(value)}, not an object"
        for name in self.required:
            if name not in value:
                return "", f"has no field {name!r}"
        for name, shape in (*self.required.items(), *self.optional.items()):
            if name in value:
                found = shape.where(value[name])
                if found is not None:
                    return _join(name, found)
        return None


INT, NUM, ANY = Int(), _Num(), _Any()
COUNT = Int(lo=0)
STR, BOOL = _Type(str, "a string"), _Type(bool, "true or false")


def kind(value: Any) -> str:
    """A value's JSON kind, for messages that must not echo a hostile value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    names = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _join(step: str, found: tuple[str, str]) -> tuple[str, str]:
    """Prefix a nested problem's path with one step: a field name or an index like `[2]`."""
    path, reason = found
    if path and not path.startswith("["):
        path = "." + path
    return step + path, reason


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects nest deeper than `limit`, found without recursion (a deep
    record would otherwise overflow the stack of whatever prints or copies it later)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def problem(value: Any, shape: Shape) -> str | None:
    """Why `value` does not have `shape` (a path and a reason), or None when it has."""
    if too_deep(value):
        return f"it nests deeper than {MAX_DEPTH} levels"
    found = shape.where(value)
    if found is None:
        return None
    path, reason = found
    return f"{path} {reason}" if path else f"it {reason}"


def checked(path: Path | str, value: Any, shape: Shape, hint: str | None = None) -> Any:
    """`value` when it has `shape`; otherwise a DataError naming the file and the field."""
    why = problem(value, shape)
    if why is not None:
        raise DataError(f"{path} is corrupt: {why}", hint=hint)
    return value


_DIGITS = re.compile(r"[0-9]{1,18}")


def ascii_int(text: str) -> int | None:
    """`text` as a non-negative integer when it is 1 to 18 ASCII digits, else None.

    The strict parse for ids typed or stored as text: `str.isdigit` also accepts `²` and digit
    strings of any length, which `int` then refuses with a ValueError (or, past 4300 digits,
    refuses only after a long conversion)."""
    return int(text) if isinstance(text, str) and _DIGITS.fullmatch(text) else None
