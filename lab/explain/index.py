"""A run's Grad-CAM galleries: the list (`runs/<id>/gradcam/index.json`) and each gallery's own
index (`gradcam/<name>/index.json`), with their shapes. Read without torch, so the CLI, the report
and the console can list galleries cheaply; every reader goes through here, so a hand-edited or
foreign index is a DataError naming the file, never a KeyError in a view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.runs import read_record
from lab.shapes import BOOL, COUNT, NUM, STR, ListOf, Maybe, Obj, Pattern, problem

# a gallery's name is a folder of the run, a file name is a file of that folder: no paths
NAME = Pattern(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}", "a gallery name")
FILE = Pattern(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}", "a file name")
ITEM = Obj({"file": FILE, "test_index": COUNT, "true": STR, "predicted": STR,
            "confidence": NUM, "correct": BOOL, "caption": STR},
           {"method": STR, "layer": STR})
# layer_size: (height, width) of the target layer's map; galleries before it have none
LAYER_SIZE = ListOf(COUNT, min_len=2, max_len=2)
GALLERY = Obj({"items": ListOf(ITEM)}, {"name": NAME, "method": STR, "layer": STR,
                                         "layer_size": LAYER_SIZE, "grid": Maybe(FILE),
                                         "created": STR, "filter": Obj()})
ENTRY = Obj({"name": NAME}, {"method": Maybe(STR), "layer": Maybe(STR),
                             "layer_size": Maybe(LAYER_SIZE), "grid": Maybe(STR),
                             "count": COUNT, "created": STR, "filter": Obj()})
GALLERIES = Obj({"galleries": ListOf(ENTRY)})


def read_galleries(gradcam_dir: Path) -> list[dict[str, Any]]:
    """The galleries of a run, newest first; none yet is an empty list; a corrupt list is a
    DataError (`lab gradcam RUN` writes it anew)."""
    index = read_record(Path(gradcam_dir) / "index.json", lambda v: problem(v, GALLERIES))
    return [] if index is None else list(index["galleries"])


def read_gallery(gradcam_dir: Path, name: str) -> dict[str, Any] | None:
    """One gallery's index (None when its folder has none); a corrupt one is a DataError."""
    path = Path(gradcam_dir) / name / "index.json"
    if problem(name, NAME) is not None:
        return None
    return read_record(path, lambda v: problem(v, GALLERY))


def layer_text(gallery: dict[str, Any]) -> str:
    """`features.1 (8×8)`: the target layer as the CLI and the console show it."""
    size = gallery.get("layer_size")
    name = gallery.get("layer") or "?"
    return f"{name} ({size[0]}×{size[1]})" if size else name


def entry_of(gallery: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The line of the run's list that stands for a gallery (in folder `name`, by default
    the name the gallery's index gives)."""
    name = name or gallery["name"]
    return {"name": name, "method": gallery.get("method"), "layer": gallery.get("layer"),
            "layer_size": gallery.get("layer_size"),
            "grid": f"{name}/{gallery['grid']}" if gallery.get("grid") else None,
            "count": len(gallery["items"]), "filter": gallery.get("filter") or {},
            "created": gallery.get("created") or ""}


def scan_galleries(gradcam_dir: Path) -> list[dict[str, Any]]:
    """The list rebuilt from the gallery folders themselves (newest first), for when the list
    is corrupt: a folder whose own index is missing or corrupt is left out."""
    entries = []
    for folder in sorted(Path(gradcam_dir).iterdir()) if Path(gradcam_dir).is_dir() else []:
        if not folder.is_dir() or problem(folder.name, NAME) is not None:
            continue
        try:
            gallery = read_gallery(gradcam_dir, folder.name)
        except (LabError, OSError):  # a damaged gallery is not listed
            continue
        if gallery is not None:
            entries.append(entry_of(gallery, folder.name))
    return sorted(entries, key=lambda e: e.get("created") or "", reverse=True)
