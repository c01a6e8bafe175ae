"""`lab runs`, `lab show` and `lab compare`: reading the records, for people or as JSON; and
`lab runs --prune`, which drops finished runs' resume checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.common import (
    JsonOpt,
    RunsDirOpt,
    color_enabled,
    err,
    out,
    pct,
    print_json,
    runs_dir,
    runs_dir_to_read,
)
from lab.errors import ConfigError

if TYPE_CHECKING:
    from lab.views.study import OnSkip


def runs(
    run_refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="With --prune: the runs to prune (default: every done run).",
        show_default=False)] = None,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Drop finished runs' resume checkpoints, keeping best.pt and the last "
        "weights (last.pt); a pruned run cannot be resumed.")] = False,
    json_out: JsonOpt = False,
    runs_path: RunsDirOpt = None,
) -> None:
    """List runs, newest first, with the disk each takes; or prune them (--prune)."""
    from lab.cli.render import runs_table
    from lab.runs import list_runs, summarize

    if prune:
        _prune(run_refs or [], json_out, runs_path)
        return
    if run_refs:
        raise ConfigError(f"unexpected argument {run_refs[0]!r}: runs are named only with "
                          "--prune", hint="lab runs --prune RUN...")
    rows = [summarize(r, disk=True) for r in list_runs(runs_dir_to_read(runs_path))]
    if json_out:
        print_json(rows)
    else:
        out.print(runs_table(rows))


def _prune(run_refs: list[str], json_out: bool, runs_path: Path | None) -> None:
    """Every named run is checked before any is pruned: one that is still training stops the
    command with nothing changed. With no names, every done run."""
    from lab.runs import State, list_runs, resolve_run
    from lab.runs.prune import prune, prune_problem
    from lab.views.sizes import bytes_text

    if run_refs:
        targets = [resolve_run(runs_dir(runs_path), ref) for ref in dict.fromkeys(run_refs)]
        for run in targets:
            problem = prune_problem(run)
            if problem is not None:
                raise problem
    else:
        targets = [r for r in list_runs(runs_dir_to_read(runs_path))
                   if r.live_state() == State.DONE]
    freed = {run.id: prune(run) for run in targets}
    total = sum(freed.values())
    if json_out:
        print_json({"pruned": [{"run_id": k, "freed_bytes": v} for k, v in freed.items()],
                    "freed_bytes": total})
        return
    for run_id, n in freed.items():
        out.print(f"{run_id}: {bytes_text(n)} freed" if n else f"{run_id}: nothing to prune",
                  markup=False)
    out.print(f"pruned {len(freed)} run(s): {bytes_text(total)} freed", markup=False)


def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id, prefix or 'latest'.")],
    json_out: JsonOpt = False,
    runs_path: RunsDirOpt = None,
) -> None:
    """A run in full: config, curves, per-class table, confusion matrix, most-confused pairs."""
    from rich.markup import escape

    import lab.cli.render as render
    from lab.runs import provenance, resolve_run
    from lab.views.charts import epoch_chart
    from lab.views.states import weakest_classes

    run = resolve_run(runs_dir(runs_path), run_ref)
    config, status, result = run.config(), run.status(), run.result()
    events = run.events()
    epochs = [e for e in events if e.get("event") == "epoch"]
    made = provenance.read(run.path)
    if json_out:
        print_json({"run_id": run.id, "config": config.to_dict(), "status": status,
                    "state": run.live_state(), "epochs": epochs, "result": result,
                    "provenance": made})
        return
    out.rule(f"run {run.id}")
    out.print(render.config_table(config.to_dict(), {**status, "state": run.live_state()}))
    if made is not None:
        out.print(f"[dim]made by[/] {escape(provenance.summary_line(made))}")
    if epochs:
        # the console's width (COLUMNS, else the terminal's, else 80), as for the tables
        chart = epoch_chart(epochs, width=out.width, height=18, color=color_enabled())
        out.print(chart if not color_enabled() else _ansi(chart))
    else:
        out.print("no completed epoch yet")
    if not result:
        out.print(f"no test result yet (state: {run.live_state()})")
        return
    timings, speed = result.get("timings") or {}, result.get("throughput") or {}
    out.print(f"test accuracy [bold]{pct(result['test_acc'])}[/]  "
              f"best val {pct(result.get('best_val_acc'))}  "
              f"train {speed.get('train_images_per_s') or 0:,.0f} img/s  "
              f"{timings.get('total_seconds') or 0:.0f}s on {escape(result.get('device', '?'))}")
    for line in render.outcome_lines(result):
        out.print(line, markup=False)
    weakest = weakest_classes(result["per_class"])
    out.print(render.per_class_table(result["per_class"], weakest))
    out.print(render.confusion_table(result["confusion"], result["classes"]))
    out.print(render.confused_pairs_table(result["most_confused"]))


def _ansi(text: str):  # noqa: ANN202 - a rich Text
    from rich.text import Text

    return Text.from_ansi(text)


def compare(
    run_refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Runs to compare (default: latest finished run of each level, "
        "or its study group of repeated seeds).", show_default=False)] = None,
    study: Annotated[str | None, typer.Option(
        "--study", metavar="NAME", help="Compare a study's configurations: mean ± std over "
        "seeds, 95% CI, Welch's test against the baseline.", show_default=False)] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", metavar="N|NAME", help="With --study: the row the others are tested "
        "against, by number or name (default: the first, Level 1 in a study of levels).",
        show_default=False)] = None,
    per_class: Annotated[bool, typer.Option(
        "--per-class", help="With --study: also the mean F1 per class and configuration "
        "(always in --json).")] = False,
    json_out: JsonOpt = False,
    runs_path: RunsDirOpt = None,
) -> None:
    """The study's comparison table, with the change against Level 1; with --study, one row
    per configuration with error bars."""
    from lab.errors import ConfigError

    def left_out(_run_id: str, why: str) -> None:
        err.print(f"lab: note: left out of the comparison: {why}", markup=False, soft_wrap=True)

    if study is None and (baseline is not None or per_class):
        raise ConfigError("--baseline and --per-class go with --study NAME")
    if study is not None:
        if run_refs:
            raise ConfigError("give runs or --study NAME, not both")
        _compare_study(study, baseline, per_class, json_out, runs_path, left_out)
        return
    from lab.cli.render import comparison_table
    from lab.views.compare import comparison

    rows = comparison(runs_dir_to_read(runs_path), run_refs or None, on_skip=left_out)
    if json_out:
        print_json(rows)
    else:
        out.print(comparison_table(rows, width=out.width))


def _compare_study(study: str, baseline: str | None, per_class: bool, json_out: bool,
                   runs_path: Path | None, left_out: OnSkip) -> None:
    from lab.cli.render import study_per_class_table, study_table
    from lab.views.study_compare import study_comparison

    doc = study_comparison(runs_dir_to_read(runs_path), study, baseline, on_skip=left_out)
    if json_out:
        print_json(doc)
        return
    out.print(study_table(doc))
    if per_class and doc["rows"]:
        out.print(study_per_class_table(doc))
