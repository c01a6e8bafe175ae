"""`lab report --study NAME`: a study's write-up, one section per question it answers.

The configurations with n, mean ± std, 95% interval and the difference against the baseline
(`lab.views.study.study_rows`, as `lab compare --study` shows them), accuracy bars with error
bars, the mean validation curves with a min-max band, each configuration's best run's Grad-CAM
grid, and the study's observations (`lab.views.observations`). `lab.views.report` owns the
folder (built aside, then swapped in); this module only fills it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import NotFoundError
from lab.runs import now_iso
from lab.views.bands import epoch_bands
from lab.views.markdown import cell as _cell
from lab.views.markdown import gradcam_section
from lab.views.observations import (
    ANIMALS,
    DEFORMABLE,
    RIGID,
    VEHICLES,
    RunRecord,
    observations,
    records_of,
)
from lab.views.study import Group, group_samples, study_rows, study_samples

Save = Callable[[Any, str], str]  # (figure, file name) -> its link in the report


@dataclass
class StudyRuns:
    """What a study's report is made of, all read before anything is written."""

    study: str
    groups: list[Group]
    records: list[RunRecord]
    skipped: list[str] = field(default_factory=list)

    @property
    def run_ids(self) -> list[str]:
        return [s.run_id for g in self.groups for s in g.samples]


def load_study(runs_dir: Path, study: str) -> StudyRuns:
    """The study's finished runs grouped by configuration; a run whose records cannot be read
    is left out and named in the report. No finished run is a NotFoundError."""
    skipped: list[str] = []

    def skip(_run_id: str, why: str) -> None:
        skipped.append(why)

    samples = study_samples(runs_dir, study, skip)
    records = records_of(runs_dir, samples, skip)
    kept = {r.run_id for r in records}
    groups = group_samples(s for s in samples if s.run_id in kept)
    if not groups:
        raise NotFoundError(f"study {study!r} has no finished run yet",
                            hint=f"lab study {study} shows its progress")
    return StudyRuns(study, groups, records, skipped)


def build_study(runs_dir: Path, loaded: StudyRuns, root: Path, save: Save) -> list[str]:
    """The report's Markdown (figures through `save`); returns its lines."""
    from lab.views import figures as fg

    groups, rows = loaded.groups, study_rows(loaded.groups)
    datasets = sorted({str(r.result.get("dataset", r.config.dataset)) for r in loaded.records})
    md = [f"# Study `{_cell(loaded.study)}`: {', '.join(datasets)}", "",
          f"Generated {now_iso()} by `lab report --study` from {len(loaded.records)} finished "
          f"run(s) of study `{_cell(loaded.study)}` in `{runs_dir}`.", ""]
    if loaded.skipped:
        md += [*(f"- Left out: {_cell(why)}" for why in loaded.skipped), ""]
    md += ["## Configurations", "", *_table(rows), ""]
    bars = fg.study_accuracy_figure(
        [r["name"] for r in rows], [r["test_acc"]["mean"] for r in rows],
        [(r["test_acc"]["ci_low"], r["test_acc"]["ci_high"]) for r in rows],
        [[s.test_acc for s in g.samples] for g in groups])
    md += [f"![Mean test accuracy per configuration with 95% intervals and runs]"
           f"({save(bars, 'study-accuracy.png')})", "",
           "Bars: mean test accuracy; black error bars: the 95% t interval of the mean, cut to "
           "0-100% (none for a configuration with one run); dots: the runs.", "",
           "## Validation curves", ""]
    by_id = {r.run_id: r for r in loaded.records}
    bands = {row["name"]: epoch_bands([_epochs(by_id[s.run_id]) for s in g.samples])
             for row, g in zip(rows, groups, strict=True)}
    if any(bands.values()):
        fig = fg.band_curves_figure(bands)
        md += [f"![Mean validation accuracy per epoch with min-max bands]"
               f"({save(fig, 'study-val-accuracy.png')})", "",
               "Line: the mean over a configuration's runs at each epoch; band: the lowest to the "
               "highest run (an epoch counts the runs that reached it).", ""]
    else:
        md += ["No epoch was recorded in these runs' `metrics.jsonl`.", ""]
    md += ["## Grad-CAM of each configuration's best run", ""]
    for row, group in zip(rows, groups, strict=True):
        md += _best_gallery(row, group, by_id, root)
    obs = observations(loaded.records, loaded.study)
    md += ["## Observations", "", *observation_lines(obs)]
    return md


def _table(rows: list[dict[str, Any]]) -> list[str]:
    md = ["| Configuration | n | Seeds | Test accuracy (mean ± std) | 95% CI | Δ vs baseline "
          "| 95% CI of Δ | p (Welch) | Verdict | Best run |",
          "|---|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        acc, versus = r["test_acc"], r["versus_baseline"]
        std = "" if acc["std"] is None else f" ± {100 * acc['std']:.2f}"
        if versus is None:
            delta = ci = p = "–"
            verdict = "baseline"
        else:
            delta = f"{100 * versus['delta']:+.2f} pp"
            ci = _interval(versus["ci_low"], versus["ci_high"], signed=True)
            p = "–" if versus["p"] is None else f"{versus['p']:.3g}"
            verdict = {None: "not tested (a side has one run)", True: "within noise",
                       False: "**real**"}[versus["within_noise"]]
        md.append(f"| {_cell(r['name'])} | {acc['n']} | {', '.join(map(str, r['seeds']))} | "
                  f"{100 * acc['mean']:.2f}%{std} | {_interval(acc['ci_low'], acc['ci_high'])} "
                  f"| {delta} | {ci} | {p} | {verdict} | `{r['best_run']}` |")
    base = next((r["name"] for r in rows if r["baseline"]), "–")
    return md + ["", f"Baseline: {_cell(base)}. Δ in percentage points; Welch's t-test, a "
                 "difference with p ≥ 0.05 is within seed noise. Intervals are 95%."]


def _best_gallery(row: dict[str, Any], group: Group, by_id: dict[str, RunRecord],
                  root: Path) -> list[str]:
    best = group.best()
    run = by_id[best.run_id].run
    return [f"### {_cell(row['name'])}: best run `{best.run_id}` "
            f"({100 * best.test_acc:.2f}%)", "", *gradcam_section(run, root), ""]


def _epochs(record: RunRecord) -> list[dict[str, Any]]:
    return [e for e in record.run.events() if e.get("event") == "epoch"]


def observation_lines(obs: dict[str, Any]) -> list[str]:
    """The observations as Markdown, per level (shared by the report and `lab observations`)."""
    md = ["Per level, over the runs of every configuration of that level. Per-class accuracy "
          "is the share of a class's test images predicted right.", ""]
    for level in obs["levels"]:
        md += [f"### {level['label']}: {level['n']} run(s) on {', '.join(level['datasets'])}", ""]
        md += _ranking(level) + [""] + _groups(level["groups"]) + [""] + _cam(level["cam"]) + [""]
    return md


def _ranking(level: dict[str, Any]) -> list[str]:
    over = {"runs": "t interval over runs", "test images":
            "one run: exact interval over the class's test images"}
    kinds = sorted({over[r["interval"]] for r in level["classes"]})
    md = [f"Per-class test accuracy, best first (mean; 95% CI: {'; '.join(kinds)}):", "",
          "| Rank | Class | Accuracy | 95% CI |", "|---:|---|---:|---:|"]
    md += [f"| {r['rank']} | {_cell(r['class'])} | {100 * r['mean']:.2f}% | "
           f"{_interval(r['low'], r['high'])} |" for r in level["classes"]]
    return md


def _groups(groups: dict[str, Any]) -> list[str]:
    if not groups["applies"]:
        return [f"The class groups (vehicles, animals) are CIFAR-10's: "
                f"{_cell(groups['note'])}."]
    gap, claim = groups["gap"], groups["claim"]
    over = {"runs": f"bootstrap over {gap['n']} runs",
            "test images": "one run: bootstrap over the test images of each class, so test-set "
                           "noise only, not seed noise",
            None: "too few test images for an interval"}[gap["interval"]]
    md = [f"Vehicles ({', '.join(VEHICLES)}) {100 * gap['vehicles']:.2f}%, animals "
          f"({', '.join(ANIMALS)}) {100 * gap['animals']:.2f}%: gap "
          f"**{100 * gap['gap']:+.2f} pp** (95% CI {_interval(gap['low'], gap['high'], True)}; "
          f"{over}).", ""]
    ranks = ", ".join(f"{c} {claim['ranks'][c]}" for c in RIGID + DEFORMABLE)
    verdict = "**holds**" if claim["holds"] else "**does not hold**"
    md.append(f"Claim \"rigid objects ({', '.join(RIGID)}) best, deformable animals "
              f"({', '.join(DEFORMABLE)}) worst\" {verdict}: three best {', '.join(claim['best'])};"
              f" three worst {', '.join(claim['worst'])} (ranks: {ranks}).")
    return md


def _cam(cam: dict[str, Any]) -> list[str]:
    uniform = ", ".join(f"{100 * u:.1f}%" for u in cam["uniform"]) or "about 50%"
    md = [f"Grad-CAM heat in the central box (centred, {100 * cam['central_area']:.0f}% of the "
          f"image's area; a proxy for \"on the object\", not a segmentation; heat spread evenly "
          f"would give {uniform}), over the maps of {cam['runs']} run(s)' galleries (the most "
          "confident right and wrong images of each class; 95% CI: bootstrap over maps):", ""]
    md += [f"- No maps from `{run_id}`: {_cell(why)}." for run_id, why in cam["missing"].items()]
    if cam["empty_maps"]:
        md.append(f"- {cam['empty_maps']} map(s) with no heat at all left out.")
    for kind, name in (("correct", "right predictions"), ("wrong", "wrong predictions")):
        s = cam[kind]
        share = "–" if s["mean"] is None else f"{100 * s['mean']:.1f}%"
        md.append(f"- {name}: {share} (95% CI {_interval(s['low'], s['high'], digits=1)}, "
                  f"{s['n']} map(s))")
    diff = cam["difference"]
    if diff is None:
        md += ["", "Claim \"heat on the object when right, off it when wrong\": not checked "
                   "(no maps of right or of wrong predictions)."]
        return md
    verdict = {True: "**holds** (the interval is above zero)",
               False: "**does not hold** (the interval reaches zero or below)",
               None: "not checked (too few maps for an interval)"}[cam["holds"]]
    md += ["", f"Right minus wrong: {100 * diff['mean']:+.1f} pp (95% CI "
               f"{_interval(diff['low'], diff['high'], True, 1)}). Claim \"heat on the object when "
               f"right, off it when wrong\" {verdict}."]
    return md


def _interval(low: float | None, high: float | None, signed: bool = False,
              digits: int = 2) -> str:
    if low is None or high is None:
        return "–"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    unit = " pp" if signed else "%"
    return f"{fmt.format(100 * low)} to {fmt.format(100 * high)}{unit}"
