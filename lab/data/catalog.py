"""Turn what a user names (a spec or a path) into a cached, loadable data set.

The readers know formats and the store knows the cache; this module decides which reader a path
needs and when an image folder's cached copy is still current.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import lab.data.cifar as cifar
import lab.data.folder as folder
import lab.data.store as store
from lab.data.digits import load_digits_dataset
from lab.data.folder import Progress
from lab.data.store import Dataset
from lab.errors import ConfigError, DataError, NotFoundError

IMAGEFOLDER_PREFIX = "imagefolder:"
SOURCE_HINT = (
    "expected cifar-10-python.tar.gz, a cifar-10-batches-py/ folder, or an image-folder tree "
    "(<class>/* or train|val|test/<class>/*) as a folder, .tar.gz, .tar.xz or .zip"
)


def _is_cifar(path: Path) -> bool:
    if path.is_dir():
        return cifar.find_batch_dir(path) is not None
    return folder.archive_kind(path) == "tar" and cifar.tar_holds_cifar(path)


def import_path(
    path: Path,
    data_dir: Path,
    *,
    name: str | None = None,
    size: int | None = None,
    source: str | None = None,
    mirror_safe: bool = True,
    progress: Progress | None = None,
) -> dict:
    """import_data, plus ``source`` to record where the file came from (a URL for downloads)."""
    path = Path(path).expanduser()
    if name is not None:
        store.check_name(name)
    if not path.exists():
        raise NotFoundError(f"nothing at {path}", hint=SOURCE_HINT)
    fingerprint = folder.tree_fingerprint(path)
    if _is_cifar(path):
        if size is not None:
            raise ConfigError(
                "size applies to image-folder imports only", hint="drop it for CIFAR-10 batches"
            )
        imp = cifar.read_cifar(path)
    elif path.is_dir() or folder.archive_kind(path) is not None:
        imp = folder.read_image_folder(path, size=size, progress=progress)
    else:
        raise DataError(f"{path} is not a dataset archive or folder", hint=SOURCE_HINT)
    imp.extra["source_fingerprint"] = fingerprint
    imp.extra["mirror_safe"] = bool(mirror_safe)
    if source is not None:
        imp.source = source
        imp.extra["source_fingerprint"] = None
    return store.save(data_dir, name or imp.default_name, imp)


def import_data(
    path: Path,
    data_dir: Path,
    name: str | None = None,
    size: int | None = None,
    mirror_safe: bool = True,
    progress: Progress | None = None,
) -> dict:
    """Import a CIFAR-10 tarball/folder or an image-folder tree; returns the manifest.

    ``mirror_safe=False`` declares that a mirrored image may belong to another class (left and
    right, text, digits): runs on the set then never flip it (see ``lab.data.mirror``).
    ``progress(done, total)`` hears of an image folder's decoding, a chunk at a time."""
    return import_path(path, data_dir, name=name, size=size, mirror_safe=mirror_safe,
                       progress=progress)


def folder_cache_name(path: Path) -> str:
    """A stable cache name per folder, so `imagefolder:PATH` never clobbers a named set."""
    return "folder-" + hashlib.sha256(str(path).encode()).hexdigest()[:12]


def _load_folder_spec(raw: str, data_dir: Path) -> Dataset:
    path = Path(raw).expanduser().resolve()
    if not path.exists():
        raise NotFoundError(f"no image folder at {path}", hint="check the path after imagefolder:")
    name = folder_cache_name(path)
    fingerprint = folder.tree_fingerprint(path)
    try:
        manifest = store.read_manifest(data_dir, name)
    except (NotFoundError, DataError):
        manifest = None
    if manifest is None or manifest.get("source_fingerprint") != fingerprint:
        import_path(path, data_dir, name=name)
    return store.load_cached(data_dir, name)


def load_dataset(spec: str, data_dir: Path) -> Dataset:
    """Resolve "digits", "imagefolder:PATH" or a cached name to arrays in memory."""
    if spec == "digits":
        return load_digits_dataset()
    if spec.startswith(IMAGEFOLDER_PREFIX):
        raw = spec[len(IMAGEFOLDER_PREFIX) :]
        if not raw:
            raise ConfigError("imagefolder: needs a path", hint="e.g. imagefolder:~/data/pets")
        return _load_folder_spec(raw, data_dir)
    try:
        store.check_name(spec)
    except ConfigError:
        raise ConfigError(
            f"'{spec}' is not a dataset name",
            hint="use digits, imagefolder:PATH, or a name from `lab data info`",
        ) from None
    return store.load_cached(data_dir, spec)


def dataset_manifest(spec: str, data_dir: Path) -> dict:
    """The manifest of the data set `spec` names, without loading its arrays where the cache
    has it (what `lab predict` needs: classes, stored image size, mirror statement)."""
    if spec.startswith(IMAGEFOLDER_PREFIX) and spec[len(IMAGEFOLDER_PREFIX):]:
        name = folder_cache_name(Path(spec[len(IMAGEFOLDER_PREFIX):]).expanduser().resolve())
        try:
            return store.read_manifest(data_dir, name)
        except (NotFoundError, DataError):
            pass
    elif spec != "digits" and not spec.startswith(IMAGEFOLDER_PREFIX):
        with contextlib.suppress(ConfigError):
            return store.read_manifest(data_dir, store.check_name(spec))
    return load_dataset(spec, data_dir).manifest
