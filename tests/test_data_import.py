"""Importing, caching, verifying and loading data sets, on real files written by tests/fakes.py."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab.data import (
    CIFAR10_CLASSES,
    default_data_dir,
    import_data,
    list_datasets,
    load_dataset,
    verify_dataset,
)
from lab.data import cifar as cifar_mod
from lab.data import folder as folder_mod
from lab.errors import ConfigError, DataError, NotFoundError
from tests import fakes

REAL_CIFAR_JPEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.xz"


def snapshot(data_dir: Path) -> dict[str, bytes]:
    """Every file under data_dir with its bytes, to prove a failed import changed nothing."""
    return {
        str(p.relative_to(data_dir)): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()
    }


def leftovers(data_dir: Path) -> list[str]:
    return [p.name for p in data_dir.iterdir() if p.name.startswith(".")]


# --- CIFAR-10 official format -------------------------------------------------------------


def test_cifar_tarball_imports_with_shapes_labels_and_pixels(tmp_path: Path) -> None:
    fake = fakes.write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    data_dir = tmp_path / "data"

    manifest = import_data(fake.path, data_dir)

    assert manifest["name"] == "cifar10"
    assert manifest["format"] == "cifar-python"
    assert manifest["counts"] == {"train": 50, "test": 20}
    assert manifest["image_size"] == [32, 32]
    assert manifest["classes"] == list(CIFAR10_CLASSES)
    assert manifest["source_sha256"] == hashlib.sha256(fake.path.read_bytes()).hexdigest()
    ds = load_dataset("cifar10", data_dir)
    assert ds.train_x.shape == (50, 32, 32, 3) and ds.train_x.dtype == np.uint8
    assert ds.train_y.dtype == np.int64
    np.testing.assert_array_equal(ds.train_x, fake.train_x)
    np.testing.assert_array_equal(ds.train_y, fake.train_y)
    np.testing.assert_array_equal(ds.test_x, fake.test_x)
    np.testing.assert_array_equal(ds.test_y, fake.test_y)


def test_fake_tarball_is_not_official_and_says_why(tmp_path: Path) -> None:
    fake = fakes.write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    manifest = import_data(fake.path, tmp_path / "data")
    assert manifest["official"] is False
    assert "differs from the official cifar-10-python.tar.gz" in manifest["official_reason"]
    assert cifar_mod.CIFAR10_MD5 in manifest["official_reason"]


def test_cifar_dir_imports_from_parent_or_batch_folder(tmp_path: Path) -> None:
    fake = fakes.write_cifar_dir(tmp_path / "extracted", fakes.cifar_arrays(seed=3))
    for i, path in enumerate((tmp_path / "extracted", fake.path)):
        data_dir = tmp_path / f"data{i}"
        manifest = import_data(path, data_dir)
        ds = load_dataset("cifar10", data_dir)
        np.testing.assert_array_equal(ds.train_x, fake.train_x)
        np.testing.assert_array_equal(ds.test_y, fake.test_y)
        assert manifest["official"] is False
        assert "md5s differ" in manifest["official_reason"]


def test_cifar_dir_is_official_when_every_batch_md5_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fakes.write_cifar_dir(tmp_path)
    assert fake.path is not None
    known = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in fake.path.iterdir()}
    monkeypatch.setattr(cifar_mod, "BATCH_MD5", {k: known[k] for k in cifar_mod.BATCH_MD5})
    manifest = import_data(fake.path, tmp_path / "data")
    assert manifest["official"] is True
    assert "matches the official release" in manifest["official_reason"]


def test_planar_pixel_lands_at_its_row_col_channel(tmp_path: Path) -> None:
    # Written by hand in the official layout (R plane, G plane, B plane; each row-major), so
    # this does not trust the generator's own conversion.
    n, side = 10, 32
    rows = np.zeros((n, 3 * side * side), dtype=np.uint8)
    rows[0, 0 * 1024 + 1 * 32 + 2] = 201  # red at row 1, col 2
    rows[0, 1 * 1024 + 30 * 32 + 5] = 102  # green at row 30, col 5
    rows[0, 2 * 1024 + 7 * 32 + 31] = 53  # blue at row 7, col 31
    files = {name: fakes.batch_pickle(rows, [0] * n) for name in fakes.TRAIN_BATCHES}
    files["test_batch"] = fakes.batch_pickle(rows[:2], [1, 2])
    files["batches.meta"] = fakes.meta_pickle(CIFAR10_CLASSES)
    fake = fakes.write_cifar_tarball(tmp_path / "c.tar.gz", replace=files)

    import_data(fake.path, tmp_path / "data")
    x = load_dataset("cifar10", tmp_path / "data").train_x

    assert x.shape == (50, 32, 32, 3)
    assert x[0, 1, 2, 0] == 201
    assert x[0, 30, 5, 1] == 102
    assert x[0, 7, 31, 2] == 53
    assert int(x[0].sum()) == 201 + 102 + 53


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = fakes.malicious_batch(f"touch {marker}")
    fake = fakes.write_cifar_tarball(tmp_path / "c.tar.gz", replace={"data_batch_3": bad})
    data_dir = tmp_path / "data"

    with pytest.raises(DataError, match="refusing to unpickle"):
        import_data(fake.path, data_dir)

    assert not marker.exists()
    assert not (data_dir / "cifar10").exists()
    assert not data_dir.exists() or leftovers(data_dir) == []
    # The naive loader really would have run it: the test's payload is live.
    pickle.loads(bad)
    assert marker.exists()


def test_cifar_missing_batch_is_data_error(tmp_path: Path) -> None:
    fake = fakes.write_cifar_dir(tmp_path)
    assert fake.path is not None
    (fake.path / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        import_data(fake.path, tmp_path / "data")


def test_size_is_refused_for_cifar(tmp_path: Path) -> None:
    fake = fakes.write_cifar_tarball(tmp_path / "c.tar.gz")
    with pytest.raises(ConfigError):
        import_data(fake.path, tmp_path / "data", size=16)


# --- image-folder trees -------------------------------------------------------------------


@pytest.mark.parametrize("archive", [None, "pets.tar.gz", "pets.tar.xz", "pets.zip", "pets.tar"])
def test_image_folder_tree_as_dir_or_archive(tmp_path: Path, archive: str | None) -> None:
    tree = tmp_path / "pets"
    fake = fakes.write_image_tree(tree, classes=("dog", "cat", "fish"), per_class=3, size=(6, 9))
    source = tree if archive is None else fakes.pack(tree, tmp_path / archive)
    data_dir = tmp_path / "data"

    manifest = import_data(source, data_dir)

    assert manifest["name"] == "pets"
    assert manifest["format"] == "imagefolder"
    assert manifest["classes"] == ["cat", "dog", "fish"]
    assert manifest["counts"] == {"train": 9, "test": 3}
    assert manifest["image_size"] == [6, 9]
    assert manifest["official"] is False and manifest["resized"] is None
    ds = load_dataset("pets", data_dir)
    np.testing.assert_array_equal(ds.train_x, fake.train_x)
    np.testing.assert_array_equal(ds.train_y, fake.train_y)
    np.testing.assert_array_equal(ds.test_x, fake.test_x)
    np.testing.assert_array_equal(ds.test_y, fake.test_y)


def test_archive_with_one_wrapping_folder_and_no_test_split(tmp_path: Path) -> None:
    fake = fakes.write_image_tree(tmp_path / "tree", per_class=2, per_class_test=0)
    archive = fakes.pack(tmp_path / "tree", tmp_path / "flowers.tgz", wrapper="flowers-v2")
    manifest = import_data(archive, tmp_path / "data")
    ds = load_dataset("flowers", tmp_path / "data")
    assert manifest["counts"] == {"train": 6, "test": 0}
    assert ds.test_x is None and ds.test_y is None
    np.testing.assert_array_equal(ds.train_x, fake.train_x)


def test_cifar_class_names_give_name_cifar10_not_official(tmp_path: Path) -> None:
    fakes.write_image_tree(tmp_path / "copy", classes=CIFAR10_CLASSES, per_class=1, size=4)
    manifest = import_data(tmp_path / "copy", tmp_path / "data")
    assert manifest["name"] == "cifar10"
    assert manifest["official"] is False
    assert "image-folder copy" in manifest["official_reason"]
    assert "not the official" in manifest["official_reason"]


def test_hidden_and_non_image_files_are_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    fake = fakes.write_image_tree(tree, per_class=2)
    (tree / "train" / "cat" / ".DS_Store").write_bytes(b"\0junk")
    (tree / "train" / "cat" / "notes.txt").write_text("not an image")
    (tree / "README.md").write_text("hello")
    (tree / ".git").mkdir()
    (tree / ".git" / "x.png").write_bytes(b"not even a png")
    (tree / "train" / ".hidden-class").mkdir()
    manifest = import_data(tree, tmp_path / "data")
    assert manifest["classes"] == ["cat", "dog", "fish"]
    assert manifest["counts"]["train"] == 6
    ds = load_dataset("tree", tmp_path / "data")
    np.testing.assert_array_equal(ds.train_x, fake.train_x)


def test_mixed_sizes_fit_the_median_shorter_side_and_size_forces(tmp_path: Path) -> None:
    tree = tmp_path / "mixed"
    fakes.write_image_tree(tree, per_class=2, size=[(10, 12), (20, 20), (7, 5)])
    manifest = import_data(tree, tmp_path / "data")
    assert manifest["image_size"] == [10, 10]  # shorter sides 10, 20, 5: median 10
    assert manifest["resized"]["to"] == [10, 10]
    assert "different sizes" in manifest["resized"]["why"]

    same = tmp_path / "same"
    fakes.write_image_tree(same, per_class=1, size=8)
    forced = import_data(same, tmp_path / "data", name="forced", size=16)
    assert forced["image_size"] == [16, 16]
    assert load_dataset("forced", tmp_path / "data").train_x.shape == (3, 16, 16, 3)


def test_grayscale_and_rgba_images_become_rgb(tmp_path: Path) -> None:
    for cls, mode in (("gray", "L"), ("alpha", "RGBA"), ("pal", "P")):
        folder = tmp_path / "modes" / "train" / cls
        folder.mkdir(parents=True)
        Image.new(mode, (5, 5)).save(folder / "a.png")
    import_data(tmp_path / "modes", tmp_path / "data")
    ds = load_dataset("modes", tmp_path / "data")
    assert ds.train_x.shape == (3, 5, 5, 3)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no_train", "no train/ folder"),
        ("extra_test_class", "test/ has whale that train/ lacks"),
        ("empty_class", "has no images"),
        ("bad_image", "has no readable images"),
    ],
)
def test_bad_trees_are_data_errors_and_keep_the_cache(
    tmp_path: Path, breakage: str, message: str
) -> None:
    data_dir = tmp_path / "data"
    good = tmp_path / "good" / "animals"
    fakes.write_image_tree(good, per_class=1)
    import_data(good, data_dir)
    before = snapshot(data_dir)

    tree = tmp_path / "bad" / "animals"
    fakes.write_image_tree(tree, per_class=1)
    if breakage == "no_train":
        (tree / "train").rename(tree / "training")
    elif breakage == "extra_test_class":
        (tree / "test" / "whale").mkdir()
        Image.new("RGB", (8, 8)).save(tree / "test" / "whale" / "w.png")
    elif breakage == "empty_class":
        (tree / "train" / "owl").mkdir()
    else:  # a class whose only image is broken: broken images are skipped, the class is empty
        (tree / "train" / "dog" / "0000.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    with pytest.raises(DataError, match=message):
        import_data(tree, data_dir)

    assert snapshot(data_dir) == before
    assert leftovers(data_dir) == []


@pytest.mark.parametrize("kind", ["truncated_tar_gz", "garbage_zip", "corrupt_zip_member"])
def test_corrupt_archive_leaves_existing_cache_byte_for_byte(tmp_path: Path, kind: str) -> None:
    data_dir = tmp_path / "data"
    tree = tmp_path / "tree"
    fakes.write_image_tree(tree, per_class=4, size=16)
    import_data(tree, data_dir, name="pets")
    before = snapshot(data_dir)

    if kind == "truncated_tar_gz":
        full = fakes.pack(tree, tmp_path / "full.tar.gz").read_bytes()
        bad = tmp_path / "pets.tar.gz"
        bad.write_bytes(full[: len(full) // 2])
    elif kind == "garbage_zip":
        bad = tmp_path / "pets.zip"
        bad.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    else:
        bad = fakes.pack(tree, tmp_path / "pets.zip")
        blob = bytearray(bad.read_bytes())
        start = blob.index(b"IDAT")  # inside the first PNG's compressed data
        blob[start : start + 40] = b"\xff" * 40
        bad.write_bytes(bytes(blob))

    with pytest.raises(DataError):
        import_data(bad, data_dir, name="pets")

    assert snapshot(data_dir) == before
    assert leftovers(data_dir) == []
    assert verify_dataset(data_dir, "pets")["ok"] is True


def test_cifar_tarball_truncated_is_data_error(tmp_path: Path) -> None:
    fake = fakes.write_cifar_tarball(tmp_path / "full.tar.gz")
    assert fake.path is not None
    blob = fake.path.read_bytes()
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(blob[: len(blob) * 2 // 3])
    data_dir = tmp_path / "data"
    with pytest.raises(DataError):
        import_data(bad, data_dir)
    assert not data_dir.exists() or leftovers(data_dir) == []


def test_archive_member_escaping_the_root_is_refused(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(png)
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(png, "train/cat/a.png")
        tf.add(png, "../../outside.png")
    with pytest.raises(DataError, match="unsafe member path"):
        import_data(archive, tmp_path / "data")
    for bad_name in ("/etc/evil.png", "train/../../evil.png"):
        evil_zip = tmp_path / "evil.zip"
        with zipfile.ZipFile(evil_zip, "w") as zf:
            zf.write(png, "train/cat/a.png")
            zf.writestr(zipfile.ZipInfo(bad_name), png.read_bytes())  # write() would clean it
        with pytest.raises(DataError, match="unsafe member path"):
            import_data(evil_zip, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_decoding_in_the_process_pool_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real sets are decoded in a process pool; shrink the chunk so a small tree takes that path.
    fake = fakes.write_image_tree(tmp_path / "tree", per_class=6, size=5)
    archive = fakes.pack(tmp_path / "tree", tmp_path / "pool.tar.gz")
    monkeypatch.setattr(folder_mod, "CHUNK", 4)
    monkeypatch.setattr(folder_mod, "_cpu_count", lambda: 2)
    for source, name in ((tmp_path / "tree", "dirpool"), (archive, "tarpool")):
        import_data(source, tmp_path / "data", name=name)
        ds = load_dataset(name, tmp_path / "data")
        np.testing.assert_array_equal(ds.train_x, fake.train_x)
        np.testing.assert_array_equal(ds.test_y, fake.test_y)


# --- cache, names, loading ----------------------------------------------------------------


def test_reimport_replaces_the_cached_copy(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fakes.write_image_tree(tmp_path / "a", per_class=1, seed=1)
    second = fakes.write_image_tree(tmp_path / "b", per_class=2, seed=2)
    import_data(tmp_path / "a", data_dir, name="set")
    import_data(tmp_path / "b", data_dir, name="set")
    ds = load_dataset("set", data_dir)
    np.testing.assert_array_equal(ds.train_x, second.train_x)
    assert sorted(p.name for p in data_dir.iterdir()) == ["set"]
    assert sorted(p.name for p in (data_dir / "set").iterdir()) == ["data.npz", "manifest.json"]


def test_manifest_records_provenance(tmp_path: Path) -> None:
    fakes.write_image_tree(tmp_path / "tree", per_class=1)
    m = import_data(tmp_path / "tree", tmp_path / "data", name="t")
    on_disk = json.loads((tmp_path / "data" / "t" / "manifest.json").read_text())
    assert on_disk == m
    for key in [
        "name",
        "classes",
        "source",
        "source_sha256",
        "official",
        "official_reason",
        "counts",
        "image_size",
        "format",
        "data_sha256",
        "created",
    ]:
        assert key in m, key
    assert m["source"] == str((tmp_path / "tree").resolve())
    npz = (tmp_path / "data" / "t" / "data.npz").read_bytes()
    assert m["data_sha256"] == hashlib.sha256(npz).hexdigest()


def test_load_missing_name_is_not_found_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as err:
        load_dataset("cifar10", tmp_path / "data")
    assert "lab data fetch" in str(err.value) and "lab data import" in str(err.value)
    with pytest.raises(NotFoundError, match="lab data import"):
        load_dataset("pets", tmp_path / "data")
    with pytest.raises(ConfigError):
        load_dataset("../etc", tmp_path / "data")
    with pytest.raises(NotFoundError):
        import_data(tmp_path / "nope.tar.gz", tmp_path / "data")


def test_bad_names_are_config_errors(tmp_path: Path) -> None:
    fakes.write_image_tree(tmp_path / "tree", per_class=1)
    for name in ("digits", "a/b", "..", ""):
        with pytest.raises(ConfigError):
            import_data(tmp_path / "tree", tmp_path / "data", name=name)


def test_imagefolder_spec_imports_once_then_reuses(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    fake = fakes.write_image_tree(tree, per_class=2)
    data_dir = tmp_path / "data"

    first = load_dataset(f"imagefolder:{tree}", data_dir)
    np.testing.assert_array_equal(first.train_x, fake.train_x)
    assert first.name.startswith("folder-") and len(first.name) == len("folder-") + 12
    npz = data_dir / first.name / "data.npz"
    stamp = (npz.stat().st_ino, npz.stat().st_mtime_ns)

    again = load_dataset(f"imagefolder:{tree}", data_dir)
    assert again.manifest == first.manifest
    assert (npz.stat().st_ino, npz.stat().st_mtime_ns) == stamp

    time.sleep(0.01)
    Image.new("RGB", (8, 8)).save(tree / "train" / "cat" / "9999.png")
    changed = load_dataset(f"imagefolder:{tree}", data_dir)
    assert changed.manifest["counts"]["train"] == 7
    assert [m["name"] for m in list_datasets(data_dir)] == [first.name]


def test_verify_passes_then_detects_tampering(tmp_path: Path) -> None:
    fakes.write_image_tree(tmp_path / "tree", per_class=2)
    import_data(tmp_path / "tree", tmp_path / "data", name="t")
    report = verify_dataset(tmp_path / "data", "t")
    assert report["ok"] is True and report["counts"] == {"train": 6, "test": 3}

    npz = tmp_path / "data" / "t" / "data.npz"
    blob = bytearray(npz.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    npz.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="modified"):
        verify_dataset(tmp_path / "data", "t")


def test_load_detects_arrays_that_disagree_with_the_manifest(tmp_path: Path) -> None:
    fakes.write_image_tree(tmp_path / "tree", per_class=2)
    import_data(tmp_path / "tree", tmp_path / "data", name="t")
    manifest_path = tmp_path / "data" / "t" / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["counts"]["train"] = 999
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(DataError, match="counts"):
        load_dataset("t", tmp_path / "data")


def test_list_datasets(tmp_path: Path) -> None:
    assert list_datasets(tmp_path / "absent") == []
    fakes.write_image_tree(tmp_path / "tree", per_class=1)
    import_data(tmp_path / "tree", tmp_path / "data", name="b")
    import_data(tmp_path / "tree", tmp_path / "data", name="a")
    (tmp_path / "data" / "broken").mkdir()
    (tmp_path / "data" / "broken" / "manifest.json").write_text("{not json")
    listed = list_datasets(tmp_path / "data")
    assert [m["name"] for m in listed] == ["a", "b", "broken"]
    assert "error" in listed[2] and listed[0]["counts"]["train"] == 3


def test_default_data_dir_env_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LAB_DATA_DIR")
    assert default_data_dir() == tmp_path / "xdg" / "lab" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "lab" / "data"


# --- digits -------------------------------------------------------------------------------


def test_digits_is_cifar_shaped_without_a_test_split(tmp_path: Path) -> None:
    ds = load_dataset("digits", tmp_path / "never-created")
    assert ds.train_x.shape == (1797, 32, 32, 3) and ds.train_x.dtype == np.uint8
    assert ds.train_y.shape == (1797,) and ds.train_y.dtype == np.int64
    assert ds.classes == [str(i) for i in range(10)]
    assert ds.test_x is None and ds.test_y is None
    assert ds.train_x.min() == 0 and ds.train_x.max() > 200
    assert (ds.train_x[..., 0] == ds.train_x[..., 2]).all()  # grey, as three channels
    # same images in the same order: 4x4 block means track the 0..16 source scaled to 0..255
    from sklearn.datasets import load_digits

    src = load_digits()
    np.testing.assert_array_equal(ds.train_y, src.target)
    # read without scikit-learn, the very values `load_digits` gives (the manifest's hash of
    # them, and so every digits run's recorded data, is what it was when sklearn read them)
    assert ds.manifest["source_sha256"] == hashlib.sha256(
        np.asarray(src.images, dtype=np.float64).tobytes()).hexdigest()
    pooled = ds.train_x[..., 0].reshape(1797, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.corrcoef(pooled.ravel(), src.images.ravel())[0, 1] > 0.95
    assert ds.manifest["format"] == "sklearn"
    assert not (tmp_path / "never-created").exists()


# --- the real copy ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.cifar
def test_real_cifar10_jpeg_copy_imports(tmp_path: Path) -> None:
    if not REAL_CIFAR_JPEG.is_file():
        pytest.skip(f"{REAL_CIFAR_JPEG} is not here")
    manifest = import_data(REAL_CIFAR_JPEG, tmp_path / "data")
    assert manifest["name"] == "cifar10"
    assert manifest["counts"] == {"train": 50000, "test": 10000}
    assert manifest["classes"] == list(CIFAR10_CLASSES)
    assert manifest["image_size"] == [32, 32]
    assert manifest["official"] is False
    assert "not the official" in manifest["official_reason"]
    ds = load_dataset("cifar10", tmp_path / "data")
    assert np.bincount(ds.train_y).tolist() == [5000] * 10
    assert np.bincount(ds.test_y).tolist() == [1000] * 10
