"""How states and scores look, once for every face: the CLI's tables, `lab queue`, the console.

States come from `lab.runs.State`; two more exist only on screen: `cancelling` (a cancel is
recorded, the job has not stopped yet) and `corrupt` (a run whose records cannot be read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.runs import State

CANCELLING, CORRUPT = "cancelling", "corrupt"


@dataclass(frozen=True)
class Look:
    icon: str
    style: str  # a Rich style
    rank: int  # order when sorting by state: what needs attention first


LOOKS: dict[str, Look] = {
    State.RUNNING.value: Look("▶", "bold cyan", 0),
    CANCELLING: Look("⊘", "yellow", 1),
    State.QUEUED.value: Look("·", "", 2),
    State.CREATED.value: Look("·", "dim", 3),
    State.INTERRUPTED.value: Look("‖", "yellow", 4),
    State.FAILED.value: Look("✗", "red", 5),
    CORRUPT: Look("!", "bold red", 6),
    State.CANCELLED.value: Look("⊘", "dim", 7),
    State.DONE.value: Look("✓", "green", 8),
}
_UNKNOWN = Look("?", "", len(LOOKS))


def look(state: str) -> Look:
    return LOOKS.get(str(state), _UNKNOWN)


def weakest_classes(per_class: list[dict[str, Any]], n: int = 3) -> list[str]:
    """Classes with the lowest F1: the ones a table should mark."""
    ranked = sorted(per_class, key=lambda r: (r["f1"], r["class"]))
    return [r["class"] for r in ranked[:n]]
