"""Markdown pieces both reports share (`lab.views.report` for runs, `lab.views.study_report`
for a study): safe table cells, percentages, and a run's Grad-CAM section with its grid copied
beside the report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lab.errors import DataError
from lab.explain.index import read_galleries, read_gallery
from lab.runs import RunDir


def gradcam_section(run: RunDir, root: Path) -> list[str]:
    """The run's gallery grid, copied into `root/figures`, with its captions as a table."""
    base = run.path / "gradcam"
    try:
        galleries = read_galleries(base)
    except DataError as exc:
        return [f"Grad-CAM index unreadable: {cell(str(exc))}."]
    if not galleries:
        try:
            failed = run.status().get("gradcam_error")
        except DataError:
            failed = None
        why = f": the end-of-run gallery failed ({cell(failed)})" if failed else ""
        return [f"No Grad-CAM gallery for this run{why} (make one with `lab gradcam RUN`)."]
    gallery = next((g for g in galleries if g["name"] == "gradcam"), galleries[0])
    name = gallery["name"]
    if not gallery.get("grid"):
        return [f"Grad-CAM gallery `{cell(name)}` is empty: no test image matched it."]
    grid = inside(base, gallery["grid"])  # a string: the index's schema says so
    if grid is None or not is_png(grid):
        return [f"Grad-CAM gallery `{cell(name)}` has no readable grid image."]
    rel = f"figures/{run.id}-gradcam-{name}.png"
    shutil.copyfile(grid, root / rel)
    try:
        detail = read_gallery(base, name) or {}
    except DataError:
        detail = {}
    items = detail.get("items") or []
    method = gallery.get("method") or detail.get("method") or "?"
    layer = gallery.get("layer") or detail.get("layer") or "?"
    wrong = sum(1 for it in items if it.get("correct") is False)
    md = [f"Gallery `{cell(name)}`: {cell(method)} on layer `{cell(layer)}`, "
          f"{len(items) or gallery.get('count', 0)}"
          f" image(s)" + (f", {wrong} misclassified" if items else "") + ".", "",
          f"![Grad-CAM gallery {name} of {run.id}]({rel})", ""]
    if items:
        md += ["| # | Caption | | Test image |", "|---:|---|---|---:|"]
        for i, it in enumerate(items, 1):
            text = it.get("caption") or caption(it)
            mark = "**wrong**" if it.get("correct") is False else "right"
            md.append(f"| {i} | {cell(text)} | {mark} | {it.get('test_index', '–')} |")
    return md


def caption(item: dict[str, Any]) -> str:
    conf = item.get("confidence")
    return (f"true {item.get('true', '?')} · pred {item.get('predicted', '?')}"
            + (f" · {pct(conf, 0)}" if isinstance(conf, (int, float)) else ""))


def inside(base: Path, rel: str) -> Path | None:
    """`base/rel` when it stays inside `base` (an index must not point anywhere else)."""
    if not rel:
        return None
    path = (base / rel).resolve()
    return path if path.is_relative_to(base.resolve()) and path.is_file() else None


def is_png(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"


def cell(value: Any) -> str:
    """Text safe inside a Markdown table cell (class names come from folder names)."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"
