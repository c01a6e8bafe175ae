"""`lab observations`: the study's qualitative findings measured, per level, with intervals."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lab.cli.common import JsonOpt, RunsDirOpt, err, out, print_json, runs_dir_to_read


def observations(
    study: Annotated[str | None, typer.Option(
        "--study", help="The study whose runs to use (default: every finished run).",
        show_default=False)] = None,
    json_out: JsonOpt = False,
    runs_path: RunsDirOpt = None,
) -> None:
    """The study's observations measured per level, with 95% intervals.

    Per-class accuracy ranked, vehicles vs animals, Grad-CAM heat in the centre: right vs wrong.
    """
    from lab.errors import NotFoundError
    from lab.views.observations import load_records
    from lab.views.observations import observations as measure
    from lab.views.study_report import observation_lines

    def left_out(_run_id: str, why: str) -> None:
        err.print(f"lab: note: left out: {why}", markup=False, soft_wrap=True)

    records = load_records(runs_dir_to_read(runs_path), study, on_skip=left_out)
    if not records:
        where = f"in study {study!r}" if study else "yet"
        raise NotFoundError(f"no finished run {where}",
                            hint="observations need finished runs (lab queue shows progress)")
    result = measure(records, study)
    if json_out:
        print_json(result)
        return
    text = "\n".join(observation_lines(result)).rstrip() + "\n"
    if out.is_terminal:
        from rich.markdown import Markdown

        out.print(Markdown(text))
    else:  # piped or redirected: the Markdown itself, ready to paste
        sys.stdout.write(text)
