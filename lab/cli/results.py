"""`lab runs`, `lab show` and `lab compare`: reading the records, for people or as JSON."""

from __future__ import annotations

import shutil
from typing import Annotated

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
)


def runs(json_out: JsonOpt = False, runs_path: RunsDirOpt = None) -> None:
    """List runs, newest first."""
    from lab.cli.render import runs_table
    from lab.runs import list_runs, summarize

    rows = [summarize(r) for r in list_runs(runs_dir(runs_path))]
    if json_out:
        print_json(rows)
    else:
        out.print(runs_table(rows))


def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id, prefix or 'latest'.")],
    json_out: JsonOpt = False,
    runs_path: RunsDirOpt = None,
) -> None:
    """A run in full: config, curves, per-class table, confusion matrix, most-confused pairs."""
    from rich.markup import escape

    import lab.cli.render as render
    from lab.runs import resolve_run
    from lab.views.charts import epoch_chart
    from lab.views.states import weakest_classes

    run = resolve_run(runs_dir(runs_path), run_ref)
    config, status, result = run.config(), run.status(), run.result()
    events = run.events()
    epochs = [e for e in events if e.get("event") == "epoch"]
    if json_out:
        print_json({"run_id": run.id, "config": config.to_dict(), "status": status,
                    "state": run.live_state(), "epochs": epochs, "result": result})
        return
    out.rule(f"run {run.id}")
    out.print(render.config_table(config.to_dict(), {**status, "state": run.live_state()}))
    if epochs:
        width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 140))
        chart = epoch_chart(epochs, width=width, height=18, color=color_enabled())
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
    weakest = weakest_classes(result["per_class"])
    out.print(render.per_class_table(result["per_class"], weakest))
    out.print(render.confusion_table(result["confusion"], result["classes"]))
    out.print(render.confused_pairs_table(result["most_confused"]))


def _ansi(text: str):  # noqa: ANN202 - a rich Text
    from rich.text import Text

    return Text.from_ansi(text)


def compare(
    run_refs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="Runs to compare (default: latest finished run of each level).",
        show_default=False)] = None,
    json_out: JsonOpt = False,
    runs_path: RunsDirOpt = None,
) -> None:
    """The study's comparison table, with the change against Level 1."""
    from lab.cli.render import comparison_table
    from lab.views.compare import comparison

    def left_out(_run_id: str, why: str) -> None:
        err.print(f"lab: note: left out of the comparison: {why}", markup=False, soft_wrap=True)

    rows = comparison(runs_dir(runs_path), run_refs or None, on_skip=left_out)
    if json_out:
        print_json(rows)
    else:
        out.print(comparison_table(rows, width=out.width))
