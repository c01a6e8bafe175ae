"""A study's comparison, as one document: a row per configuration against a baseline row, the
per-class F1 the same way, the notes that say in plain words what the numbers mean, and the runs
left out. `lab compare --study` prints it or gives it as JSON; the cell texts below are shared
with the console, so both show the same figures the same way.
"""

from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.views.compare import epochs_text
from lab.views.study import (
    ALPHA,
    CONFIDENCE,
    N_TOO_SMALL,
    OnSkip,
    group_label,
    group_samples,
    naming_fields,
    per_class_rows,
    study_rows,
    study_samples,
)


def study_comparison(runs_dir: Path, study: str, baseline: str | None = None,
                     on_skip: OnSkip | None = None) -> dict[str, Any]:
    """The comparison of `study`'s configurations. `baseline`: a row number (1 = the first,
    as the table numbers them) or a row's name; by default the first row, which for a study
    of levels is Level 1. Unreadable runs are left out, reported to `on_skip` and listed."""
    skipped: list[dict[str, str]] = []
    unfinished: list[dict[str, str]] = []

    def skip(run_id: str, why: str) -> None:
        skipped.append({"run_id": run_id, "why": why})
        if on_skip is not None:
            on_skip(run_id, why)

    samples = study_samples(runs_dir, study, on_skip=skip, on_unfinished=lambda run_id, state:
                            unfinished.append({"run_id": run_id, "state": state}))
    groups = group_samples(samples)
    naming = naming_fields(groups)
    index = pick_baseline([group_label(g, naming) for g in groups], baseline)
    rows = study_rows(groups, index)
    setups = {f"{g.config.dataset}, {g.config.image_size} px, {epochs_text(g.config.epochs)}"
              for g in groups}
    return {"study": study, "setup": setups.pop() if len(setups) == 1 else None,
            "baseline": index, "rows": rows, "per_class": per_class_rows(groups),
            "notes": study_notes(study, rows, index, unfinished, skipped),
            "skipped": skipped, "unfinished": unfinished}


def pick_baseline(names: list[str], ref: str | None) -> int:
    """The row `ref` names: its number (1-based) or its name (case aside); a usage error
    naming the choices otherwise."""
    if ref is None or not names:
        return 0
    if ref.strip().isdigit():
        number = int(ref)
        if 1 <= number <= len(names):
            return number - 1
        raise ConfigError(f"--baseline {ref}: there are rows 1 to {len(names)}")
    folded = [n.casefold() for n in names]
    if ref.strip().casefold() in folded:
        return folded.index(ref.strip().casefold())
    close = difflib.get_close_matches(ref, names, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"--baseline {ref!r} is no row: {guess}rows: {', '.join(names)}",
                      hint="give a row's number or name")


def study_notes(study: str, rows: list[dict[str, Any]], baseline: int,
                unfinished: list[dict[str, str]], skipped: list[dict[str, str]]) -> list[str]:
    """What the table's columns mean, in plain words, and what it leaves out."""
    if not rows:
        notes = [f"no finished runs in study {study!r} yet"]
    else:
        base = rows[baseline]["name"]
        level = round(100 * CONFIDENCE)
        notes = [
            "n: finished runs of a configuration (its training seeds); mean ± std: their test "
            "accuracy's average and sample standard deviation, in percentage points",
            f"{level}% CI: where the configuration's true mean lies with {level}% confidence "
            "(Student's t interval over its n runs)",
            f"Δ: percentage points against the baseline #{baseline + 1} {base}; p: Welch's "
            "t-test (two-sided, variances not assumed equal) of the row's runs against the "
            "baseline's",
            f"within noise: p ≥ {ALPHA:g}, the gap is no larger than seed-to-seed variation "
            f"explains; beyond noise: p < {ALPHA:g}",
        ]
        if any((r["versus_baseline"] or {}).get("verdict") == N_TOO_SMALL for r in rows):
            notes.append(f"{N_TOO_SMALL}: a configuration or the baseline with one finished "
                         "run has no spread to test against; more seeds: lab submit --seeds N")
    if unfinished:
        states = Counter(u["state"] for u in unfinished)
        notes.append(f"not counted: {len(unfinished)} run(s) without a result yet ("
                     + ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
                     + ")")
    if skipped:
        notes.append(f"left out: {len(skipped)} run(s) whose records cannot be read: "
                     + ", ".join(s["run_id"] for s in skipped))
    return notes


# ---- cell texts shared by the CLI and the console -------------------------------------------
# a verdict's Rich style: noise in yellow, a real gap in bold, no test dimmed
VERDICT_STYLE = {"within noise": "yellow", "beyond noise": "bold", N_TOO_SMALL: "dim"}


def mean_std_text(summary: dict[str, Any]) -> str:
    """`94.12% ± 0.53` (std in points); `94.12%` for one run."""
    text = f"{100 * summary['mean']:.2f}%"
    return text if summary["std"] is None else f"{text} ± {100 * summary['std']:.2f}"


def interval_text(summary: dict[str, Any]) -> str:
    """`93.40–94.84` in percent; `–` where n is too small for an interval."""
    if summary.get("ci_low") is None:
        return "–"
    return f"{100 * summary['ci_low']:.2f}–{100 * summary['ci_high']:.2f}"


def delta_text(versus: dict[str, Any] | None) -> str:
    """`+1.20` points, `baseline` on the baseline row."""
    return "baseline" if versus is None else f"{100 * versus['delta']:+.2f}"


def p_text(versus: dict[str, Any] | None) -> str:
    if versus is None or versus.get("p") is None:
        return "–"
    p = versus["p"]
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def verdict_text(versus: dict[str, Any] | None) -> str:
    return "" if versus is None else versus["verdict"]


def group_cells(row: dict[str, Any]) -> dict[str, str]:
    """A `lab compare` row's group columns (n, ±, 95% CI, p, the verdict), for the CLI and the
    console alike; a row of one run shows n 1 and dashes."""
    group, versus = row.get("group"), row.get("versus_l1")
    summary = group["test_acc"] if group else None
    return {"n": str(group["n"]) if group else "1",
            "std": "–" if summary is None else f"± {100 * summary['std']:.2f}",
            "ci": "–" if summary is None else interval_text(summary),
            "p": p_text(versus), "verdict": verdict_text(versus)}
