"""Which files of an image folder (or archive) are which class of which split.

Two layouts are read: torchvision's ``ImageFolder`` (``<class>/<image>``, split later 80/10/10)
and ``train|val|test/<class>/<image>`` in any combination that has ``train/``; either may sit in
one wrapping folder, as archives often do. What is not an image of a class folder is skipped and
counted by reason, never an error; a tree that could mean two things is refused in one line, so
nothing is imported on a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import DataError

Key = tuple[str, ...]  # path components relative to the folder or archive root

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
LAYOUT_HINT = "expected <class>/<image>, or train/<class>/<image> with optional val/ and test/"
# Reasons a file is skipped, as the import summary names them.
HIDDEN, NOT_IMAGE, OUTSIDE, UNREADABLE = (
    "hidden", "not an image", "outside class folders", "unreadable image")


def hidden(parts: Key) -> bool:
    """Dot files and folders, and the __MACOSX folder that macOS puts in zip files."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def is_image(parts: Key) -> bool:
    # splitext, not PurePosixPath(...).suffix: the same answer at a tenth of the cost, which
    # counts at 60,000 files
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_SUFFIXES


@dataclass
class Layout:
    """The images of each split by class (keys sorted), and the files left out, by reason."""

    root: Key
    kind: str  # "flat" or "splits"
    splits: dict[str, dict[str, list[Key]]]
    classes: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def images(self) -> list[Key]:
        return [k for by_class in self.splits.values() for ks in by_class.values() for k in ks]


def _children(dirs: set[Key], parent: Key) -> set[str]:
    n = len(parent)
    return {k[n] for k in dirs if len(k) == n + 1 and k[:n] == parent and not hidden(k[n:])}


def _root(dirs: set[Key], files: list[Key]) -> Key:
    # One folder at the top with folders in it and no images of its own wraps the tree.
    top = _children(dirs, ())
    if len(top) == 1 and not top & set(SPLITS):
        (wrapper,) = top
        direct = any(len(k) == 2 and k[0] == wrapper and is_image(k) for k in files)
        if _children(dirs, (wrapper,)) and not direct:
            return (wrapper,)
    return ()


def _class_images(files: list[Key], parent: Key, classes: set[str]) -> dict[str, list[Key]]:
    n = len(parent)
    by_class: dict[str, list[Key]] = {c: [] for c in sorted(classes)}
    for key in files:
        if len(key) > n + 1 and key[:n] == parent and key[n] in by_class:
            by_class[key[n]].append(key)
    return by_class


def find_layout(files: list[Key], dirs: set[Key], source: Path) -> Layout:
    """The layout of a tree given its file keys (every file, hidden ones too) and folders."""
    files = sorted(files)
    for key in files:
        dirs.update(key[:i] for i in range(1, len(key)))
    root = _root(dirs, files)
    shown = "/".join(root) + "/" if root else ""
    children = _children(dirs, root)
    split_dirs = [s for s in SPLITS if s in children]
    candidates = [k for k in files if not hidden(k) and is_image(k)]
    if split_dirs:
        if "train" not in split_dirs:
            found = ", ".join(f"{s}/" for s in split_dirs)
            raise DataError(f"no train/ folder in {source} (found {found})", hint=LAYOUT_HINT)
        others = sorted(c for c in children - set(SPLITS)
                        if any(k[: len(root) + 1] == (*root, c) for k in candidates))
        if others:
            raise DataError(
                f"{source} has both class folders ({', '.join(others[:3])}) and "
                f"{', '.join(f'{s}/' for s in split_dirs)}: keep one layout", hint=LAYOUT_HINT)
        splits = {s: _class_images(candidates, (*root, s), _children(dirs, (*root, s)))
                  for s in split_dirs}
        kind = "splits"
    else:
        splits = {"train": _class_images(candidates, root, children)}
        kind = "flat"
    classes = sorted(splits["train"])
    _check(splits, classes, source, shown, kind)
    used = {k for by_class in splits.values() for ks in by_class.values() for k in ks}
    skipped = dict.fromkeys((HIDDEN, NOT_IMAGE, OUTSIDE, UNREADABLE), 0)
    for key in files:
        if key in used:
            continue
        if hidden(key[:-1]):
            continue  # inside a hidden folder (.git): not part of the data at all
        if hidden(key[-1:]):
            skipped[HIDDEN] += 1
        elif not is_image(key):
            skipped[NOT_IMAGE] += 1
        else:
            skipped[OUTSIDE] += 1
    return Layout(root, kind, splits, classes, skipped)


def _check(splits: dict[str, dict[str, list[Key]]], classes: list[str], source: Path,
           shown: str, kind: str) -> None:
    where = f"{shown}train/" if kind == "splits" else (shown or f"{source.name}/")
    if len(classes) < 2:
        has = f"one class folder ({classes[0]})" if classes else "no class folders"
        raise DataError(f"{where} in {source} has {has}: classification needs at least two",
                        hint=LAYOUT_HINT)
    # an empty folder first: it is the likelier reason for classes that differ
    for split, by_class in splits.items():
        for cls, keys in by_class.items():
            if not keys:
                folder = f"{shown}{split}/{cls}" if kind == "splits" else f"{shown}{cls}"
                raise DataError(f"class folder {folder} in {source} has no images",
                                hint="add images to it or delete the empty folder")
    for split, by_class in splits.items():
        if split == "train":
            continue
        lacks = sorted(set(classes) - set(by_class))
        extra = sorted(set(by_class) - set(classes))
        if lacks or extra:
            said = "; ".join(filter(None, (
                f"{split}/ lacks {', '.join(lacks)}" if lacks else "",
                f"{split}/ has {', '.join(extra)} that train/ lacks" if extra else "")))
            raise DataError(f"classes differ between train/ and {split}/ in {source}: {said}",
                            hint="give every split the same class folders")
