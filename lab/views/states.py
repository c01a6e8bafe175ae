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


# A class is weak when its F1 is below the median F1 by more than this many points, or by more
# than twice the median absolute deviation when the classes are spread wider than that.
WEAK_GAP = 0.05
WEAK_SPREAD = 2.0


def weakest_classes(per_class: list[dict[str, Any]], n: int = 3) -> list[str]:
    """The classes clearly below the rest, worst first: F1 under the median by more than
    max(WEAK_GAP, WEAK_SPREAD × median absolute deviation), at most the `n` worst (more only
    when the n-th is tied). The median and the deviation are robust to the weak classes
    themselves, so one bad class stands out among good ones, while classes tied (at 1.000,
    say) or spread evenly mark none; a class as good as one left unmarked is never marked."""
    f1 = sorted(float(r["f1"]) for r in per_class)
    if len(f1) < 2:
        return []
    median = _median(f1)
    spread = _median([abs(v - median) for v in f1])
    threshold = median - max(WEAK_GAP, WEAK_SPREAD * spread)
    ranked = sorted((r for r in per_class if float(r["f1"]) < threshold),
                    key=lambda r: (float(r["f1"]), str(r["class"])))
    if len(ranked) > n:  # the n worst, and any tied with the n-th: a tie is never split
        cut = float(ranked[n - 1]["f1"])
        ranked = [r for r in ranked if float(r["f1"]) <= cut]
    return [r["class"] for r in ranked]


def _median(values: list[float]) -> float:
    ordered, mid = sorted(values), len(values) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
