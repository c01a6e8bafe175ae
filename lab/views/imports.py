"""An image import as a person follows it: a progress bar while images decode, then a summary.

The bar is drawn only on a terminal (a log or a pipe gets the summary alone); the summary is
read from the manifest, so it says what the cache holds, not what the import hoped for.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from lab.data.archive import human


class _Rate(ProgressColumn):
    """Images per second over Rich's recent window."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} images/s" if task.speed else "")


class ImportProgress:
    """A `progress(done, total)` callback for `import_data` that draws a bar on a terminal."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> ImportProgress:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                _Rate(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)


def import_summary(manifest: dict[str, Any]) -> list[str]:
    """Lines on an image-folder import: layout and classes, images per split, the stored size
    and why, files skipped by reason, bytes on disk. Empty for other formats."""
    if manifest.get("format") != "imagefolder" or "splits" not in manifest:
        return []
    classes = list(manifest["classes"])
    shown = ", ".join(classes[:12]) + (f", … ({len(classes) - 12} more)" if len(classes) > 12
                                         else "")
    layout = {"flat": "<class>/ folders", "splits": "train|val|test/<class>/ folders"}
    lines = [f"layout: {layout.get(manifest.get('layout'), '?')}; {len(classes)} classes: "
             f"{shown}"]
    splits = manifest["splits"]
    parts = [f"{splits.get(s, 0)} {s}" for s in ("train", "val", "test") if splits.get(s)]
    carved = [s for s in ("val", "test") if not splits.get(s)]
    lines.append("images: " + ", ".join(parts) + (
        f" ({' and '.join(carved)} split off train by each run's split_seed)" if carved else ""))
    size = "×".join(map(str, manifest["image_size"]))
    resized = manifest.get("resized")
    lines.append(f"stored at {size} " + (f"({resized.get('rule', 'resized')}): {resized['why']}"
                                         if resized else "(the images' own size)"))
    skipped = {k: v for k, v in (manifest.get("skipped") or {}).items() if v}
    if skipped:
        lines.append("skipped: " + ", ".join(f"{n} {why}" for why, n in skipped.items()))
        lines += [f"  {example}" for example in manifest.get("unreadable") or []]
    if manifest.get("data_bytes") is not None:
        lines.append(f"on disk: {human(int(manifest['data_bytes']))} (data.npz)")
    return lines
