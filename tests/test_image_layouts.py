"""Users' own image folders: the layouts, mixed sizes and modes, skipped files, the split.

Every tree is written here with Pillow (small PNGs, so pixels come back exact) and imported
through the real cache; archives are packed from the same tree with tests/fakes.pack.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab.core.prepare import checked_split
from lab.data import folder as folder_mod
from lab.data import import_data, load_dataset
from lab.data.folder import default_size
from lab.data.images import decode_rgb, fit
from lab.errors import DataError
from lab.levels import level_config
from tests import fakes
from tests.cli_inprocess import run_cli_io
from tests.test_data_import import leftovers, snapshot

CLASSES = ("cat", "dog", "owl")
BIG = 10**8


def write_tree(root: Path, layout: dict[str, int], size: int = 6, seed: int = 0,
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`layout` maps a split folder ("" for the flat <class>/ layout) to images per class.
    Returns each split's images and labels in the importer's order (class, then file name)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, per_class in layout.items():
        xs, ys = [], []
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(img).save(folder / f"{i:03d}.png")
                xs.append(img)
                ys.append(label)
        out[split or "train"] = (np.stack(xs), np.asarray(ys, dtype=np.int64))
    return out


LAYOUTS = {
    "flat": {"": 10},
    "train": {"train": 10},
    "train_test": {"train": 10, "test": 2},
    "train_val": {"train": 10, "val": 3},
    "train_val_test": {"train": 10, "val": 3, "test": 2},
}


@pytest.mark.parametrize("archive", [None, "set.zip", "set.tar.gz"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_imports_as_folder_or_archive(tmp_path: Path, layout: str,
                                                  archive: str | None) -> None:
    tree = tmp_path / "set"
    want = write_tree(tree, LAYOUTS[layout])
    source = tree if archive is None else fakes.pack(tree, tmp_path / archive)

    manifest = import_data(source, tmp_path / "data")

    ds = load_dataset("set", tmp_path / "data")
    assert manifest["classes"] == list(CLASSES)
    assert manifest["layout"] == ("flat" if layout == "flat" else "splits")
    n_val = LAYOUTS[layout].get("val", 0) * len(CLASSES)
    assert manifest["official_val"] == n_val
    assert manifest["splits"] == {s: LAYOUTS[layout].get(s, 0) * len(CLASSES)
                                  for s in ("train", "val", "test")} | (
        {"train": 30} if layout == "flat" else {})
    # train/ then an official val/ in the training arrays; test/ on its own
    pool_x = np.concatenate([want["train"][0]] + ([want["val"][0]] if n_val else []))
    pool_y = np.concatenate([want["train"][1]] + ([want["val"][1]] if n_val else []))
    np.testing.assert_array_equal(ds.train_x, pool_x)
    np.testing.assert_array_equal(ds.train_y, pool_y)
    if "test" in want:
        np.testing.assert_array_equal(ds.test_x, want["test"][0])
        np.testing.assert_array_equal(ds.test_y, want["test"][1])
    else:
        assert ds.test_x is None


def test_flat_tree_in_a_wrapping_folder_of_an_archive(tmp_path: Path) -> None:
    want = write_tree(tmp_path / "tree", {"": 4})
    archive = fakes.pack(tmp_path / "tree", tmp_path / "pets.tgz", wrapper="pets-v2")
    manifest = import_data(archive, tmp_path / "data")
    assert manifest["root"] == "pets-v2" and manifest["layout"] == "flat"
    np.testing.assert_array_equal(load_dataset("pets", tmp_path / "data").train_x,
                                  want["train"][0])


def _config(level: int, dataset: str, **changes: object):  # noqa: ANN202 - a RunConfig
    return level_config(level).replace(dataset=dataset, device="cpu", **changes)


def test_official_val_is_the_validation_split_for_every_level(tmp_path: Path) -> None:
    write_tree(tmp_path / "withval", {"train": 10, "val": 3, "test": 2})
    write_tree(tmp_path / "noval", {"train": 10, "val": 3})
    import_data(tmp_path / "withval", tmp_path / "data")
    import_data(tmp_path / "noval", tmp_path / "data")

    full = load_dataset("withval", tmp_path / "data")
    splits = {level: checked_split(_config(level, "withval"), full) for level in (1, 2, 3)}
    for split in splits.values():
        np.testing.assert_array_equal(split.val, np.arange(30, 39))  # val/, as given
        np.testing.assert_array_equal(split.train, np.arange(30))  # all of train/
        assert split.test is None
    assert len({s.fingerprint() for s in splits.values()}) == 1

    # No test/: the test share (10%) is carved from train/ only, stratified; val/ stays whole.
    part = load_dataset("noval", tmp_path / "data")
    split = checked_split(_config(3, "noval"), part)
    np.testing.assert_array_equal(split.val, np.arange(30, 39))
    assert sorted(np.concatenate([split.train, split.test]).tolist()) == list(range(30))
    assert np.bincount(part.train_y[split.test]).tolist() == [1, 1, 1]
    assert np.bincount(part.train_y[split.train]).tolist() == [9, 9, 9]


def test_flat_split_is_stratified_seeded_and_the_same_for_every_level(tmp_path: Path) -> None:
    write_tree(tmp_path / "flat", {"": 20})
    import_data(tmp_path / "flat", tmp_path / "data")
    ds = load_dataset("flat", tmp_path / "data")
    splits = [checked_split(_config(level, "flat", seed=level), ds) for level in (1, 2, 3)]
    assert len({s.fingerprint() for s in splits}) == 1  # the run seed differs, not the split
    split = splits[0]
    for part, each in ((split.train, 16), (split.val, 2), (split.test, 2)):
        assert np.bincount(ds.train_y[part]).tolist() == [each] * 3
    other = checked_split(_config(1, "flat", split_seed=split_seed_other()), ds)
    assert other.fingerprint() != split.fingerprint()


def split_seed_other() -> int:
    return level_config(1).split_seed + 1


@pytest.mark.slow
def test_a_run_records_the_official_val_split(tmp_path: Path, lab_dirs: dict[str, Path]) -> None:
    from lab.launch.run import start_run

    write_tree(tmp_path / "withval", {"train": 8, "val": 2, "test": 2}, size=16)
    import_data(tmp_path / "withval", lab_dirs["data"])
    config = _config(3, "withval", image_size=16, epochs=1, batch_size=8, gradcam=0,
                     cnn_channels=(4, 4, 4, 4), cnn_hidden=8)
    _run, result = start_run(config, lab_dirs["runs"], lab_dirs["data"])
    assert result["split"]["val_source"] == "official"
    assert (result["split"]["train"], result["split"]["val"], result["split"]["test"]) == (24, 6, 6)


# --- sizes and modes ----------------------------------------------------------------------


def test_fit_keeps_the_aspect_and_the_centre() -> None:
    # red | green | blue thirds of a wide image: the square crop is the green middle
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :10, 0] = wide[:, 10:20, 1] = wide[:, 20:, 2] = 255
    out = np.asarray(fit(Image.fromarray(wide), (10, 10)))
    assert (out[:, 1:-1, 1] == 255).all() and (out[:, 1:-1, [0, 2]] == 0).all()
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    out = np.asarray(fit(Image.fromarray(tall), (5, 5)))
    assert (out[1:-1, :, 1] > 200).all() and (out[1:-1, :, [0, 2]] < 50).all()


@pytest.mark.parametrize(("sides", "want"), [([5, 7, 9], 7), ([4, 5], 4), ([6, 7], 6),
                                             ([300, 1000, 2000], 256), ([1], 1)])
def test_default_size_is_the_rounded_median_capped(sides: list[int], want: int) -> None:
    assert default_size(sides) == want  # round() rounds halves to even: 4.5 -> 4, 6.5 -> 6


def _save(image: Image.Image, path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path.read_bytes()


def test_mixed_sizes_and_modes_are_fitted_like_predict_fits_them(tmp_path: Path) -> None:
    tree = tmp_path / "mixed"
    wide16 = Image.fromarray(np.full((8, 12), 257 * 100, np.uint16))  # 16-bit: not near-white
    files = {
        ("cat", "a.png"): Image.new("L", (12, 8), 90),
        ("cat", "b.png"): Image.new("RGBA", (10, 14), (10, 20, 30, 0)),
        ("cat", "c.tif"): Image.new("CMYK", (9, 9), (0, 255, 0, 0)),
        ("dog", "d.png"): wide16,
        ("dog", "e.png"): Image.new("P", (30, 20), 3),
        ("dog", "f.png"): Image.new("RGB", (16, 16), (1, 2, 3)),
    }
    blobs = {key: _save(im, tree.joinpath(*key)) for key, im in files.items()}
    assert wide16.mode.startswith("I;16")
    manifest = import_data(tree, tmp_path / "data")
    side = default_size([8, 10, 9, 8, 20, 16])
    assert manifest["image_size"] == [side, side] == [10, 10]
    assert manifest["resized"]["to"] == [side, side]
    assert "centre crop" in manifest["resized"]["rule"]
    ds = load_dataset("mixed", tmp_path / "data")
    for i, key in enumerate(sorted(blobs)):  # what `lab predict` sees of the same file
        np.testing.assert_array_equal(ds.train_x[i], decode_rgb(blobs[key], BIG, (side, side)))
    assert ds.train_x[3].max() == 100  # the 16-bit image, scaled to 8 bits
    assert (ds.train_x[2] == (255, 0, 255)).all()  # CMYK magenta

    forced = import_data(tree, tmp_path / "data", name="forced", size=4)
    assert forced["image_size"] == [4, 4] and "requested" in forced["resized"]["why"]
    np.testing.assert_array_equal(load_dataset("forced", tmp_path / "data").train_x[0],
                                  decode_rgb(blobs[("cat", "a.png")], BIG, (4, 4)))


def test_images_of_one_size_keep_it_even_when_not_square(tmp_path: Path) -> None:
    fakes.write_image_tree(tmp_path / "same", per_class=2, size=(6, 9))
    manifest = import_data(tmp_path / "same", tmp_path / "data")
    assert manifest["image_size"] == [6, 9] and manifest["resized"] is None


# --- skipped files ------------------------------------------------------------------------


def _add_junk(tree: Path, split: str) -> None:
    base = tree / split if split else tree
    (base / "cat" / ".DS_Store").write_bytes(b"\0junk")  # hidden
    (base / "cat" / "._001.png").write_bytes(b"\0junk")  # hidden (macOS resource fork)
    (base / "dog" / "notes.txt").write_text("not an image")  # not an image
    (base / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # unreadable
    (base / "owl" / "empty.jpg").write_bytes(b"")  # unreadable
    (tree / "loose.png").write_bytes((base / "cat" / "000.png").read_bytes())  # no class
    (tree / ".git").mkdir()
    (tree / ".git" / "x.png").write_bytes(b"inside a hidden folder: not data at all")


@pytest.mark.parametrize("archive", [None, "junk.zip", "junk.tar.xz"])
@pytest.mark.parametrize("split", ["", "train"])
def test_hidden_broken_and_other_files_are_skipped_and_counted(
        tmp_path: Path, split: str, archive: str | None) -> None:
    tree = tmp_path / "junk"
    want = write_tree(tree, {split: 3} | ({"test": 1} if split else {}))
    _add_junk(tree, split)
    source = tree if archive is None else fakes.pack(tree, tmp_path / archive)

    manifest = import_data(source, tmp_path / "data")

    assert manifest["skipped"] == {"hidden": 2, "not an image": 1,
                                   "outside class folders": 1, "unreadable image": 2}
    prefix = f"{split}/" if split else ""
    assert [line.split(":")[0] for line in manifest["unreadable"]] == [
        f"{prefix}dog/broken.png", f"{prefix}owl/empty.jpg"]
    np.testing.assert_array_equal(load_dataset("junk", tmp_path / "data").train_x,
                                  want["train"][0])


# --- trees that could mean two things -----------------------------------------------------


def _break(tree: Path, how: str) -> None:
    png = (tree / "train" / "cat" / "000.png").read_bytes()
    if how == "test_lacks_a_class":
        for f in (tree / "test" / "owl").iterdir():
            f.unlink()
        (tree / "test" / "owl").rmdir()
    elif how == "val_has_an_extra_class":
        (tree / "val" / "eel").mkdir()
        (tree / "val" / "eel" / "e.png").write_bytes(png)
    elif how in ("empty_class_folder", "only_broken_images"):
        for split in ("train", "val", "test"):  # emu in every split, but no image in train/
            (tree / split / "emu").mkdir()
            if split != "train":
                (tree / split / "emu" / "e.png").write_bytes(png)
        if how == "only_broken_images":
            (tree / "train" / "emu" / "x.png").write_bytes(b"not a png")
    elif how == "flat_and_splits":
        (tree / "eel").mkdir()
        (tree / "eel" / "e.png").write_bytes(png)
    elif how == "no_train":
        (tree / "train").rename(tmp := tree.parent / "elsewhere")
        assert tmp.exists()
    elif how == "one_class":
        for cls in ("dog", "owl"):
            for split in ("train", "val", "test"):
                for f in (tree / split / cls).iterdir():
                    f.unlink()
                (tree / split / cls).rmdir()


AMBIGUOUS = [
    ("test_lacks_a_class", "classes differ between train/ and test/ in .*: test/ lacks owl"),
    ("val_has_an_extra_class", "classes differ between train/ and val/ .*val/ has eel that"),
    ("empty_class_folder", "class folder train/emu in .* has no images"),
    ("only_broken_images", "class folder train/emu in .* has no readable images"),
    ("flat_and_splits", "has both class folders \\(eel\\) and train/, val/, test/"),
    ("no_train", "no train/ folder in .* \\(found val/, test/\\)"),
    ("one_class", "train/ in .* has one class folder \\(cat\\)"),
]


@pytest.mark.parametrize("archive", [None, "tree.zip"])
@pytest.mark.parametrize(("how", "message"), AMBIGUOUS, ids=[a[0] for a in AMBIGUOUS])
def test_ambiguous_trees_are_refused_in_one_line_and_nothing_is_cached(
        tmp_path: Path, how: str, message: str, archive: str | None) -> None:
    data_dir = tmp_path / "data"
    write_tree(tmp_path / "good", {"": 2})
    import_data(tmp_path / "good", data_dir, name="tree")
    before = snapshot(data_dir)
    tree = tmp_path / "tree"
    write_tree(tree, {"train": 2, "val": 1, "test": 1})
    _break(tree, how)
    source = tree if archive is None else fakes.pack(tree, tmp_path / archive)

    with pytest.raises(DataError, match=message) as caught:
        import_data(source, data_dir)

    assert "\n" not in caught.value.message
    assert snapshot(data_dir) == before and leftovers(data_dir) == []


# --- progress and summary -----------------------------------------------------------------


def test_progress_counts_up_to_the_total_in_the_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(tmp_path / "tree", {"train": 4, "test": 1})
    monkeypatch.setattr(folder_mod, "CHUNK", 4)
    monkeypatch.setattr(folder_mod, "_cpu_count", lambda: 2)
    seen: list[tuple[int, int | None]] = []
    import_data(tmp_path / "tree", tmp_path / "data", progress=lambda d, t: seen.append((d, t)))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1] == (15, 15)
    assert len(seen) >= 3 and {t for _, t in seen} == {15}


def test_import_command_prints_the_summary(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "pets"
    write_tree(tree, {"train": 3, "val": 1})
    (tree / "train" / "cat" / "x.png").write_bytes(b"broken")
    (tree / "train" / "dog" / "big.png").write_bytes(_png((20, 12)))  # one other size
    code, out, err = run_cli_io(["data", "import", str(tree), "--data-dir",
                                 str(tmp_path / "data")], capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert "layout: train|val|test/<class>/ folders; 3 classes: cat, dog, owl" in text
    assert "images: 10 train, 3 val (test split off train by each run's split_seed)" in text
    assert "stored at 6×6 (shorter side to the size, centre crop): 2 different sizes" in text
    assert "skipped: 1 unreadable image train/cat/x.png: not a readable image" in text
    size = (tmp_path / "data" / "pets" / "data.npz").stat().st_size
    assert f"on disk: {size / 1024:.1f} KiB (data.npz)" in text
    assert "decoding" not in err  # no bar when stderr is not a terminal
    manifest = json.loads((tmp_path / "data" / "pets" / "manifest.json").read_text())
    assert manifest["data_bytes"] == size


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (5, 5, 5)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    from rich.console import Console

    from lab.views.imports import ImportProgress

    write_tree(tmp_path / "tree", {"": 2})
    for terminal in (True, False):
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=terminal, width=120)
        with ImportProgress(console, "decoding tree") as progress:
            import_data(tmp_path / "tree", tmp_path / "data", progress=progress)
            if terminal:
                progress.progress.refresh()  # type: ignore[union-attr]
        drawn = screen.getvalue()
        assert ("decoding tree" in drawn and "6/6" in drawn) is terminal, drawn


def test_data_info_counts_an_official_val_apart_from_train() -> None:
    from lab.cli.data import _train_cell

    assert _train_cell({"counts": {"train": 12}, "official_val": 3}) == "9 + 3 val"
    assert _train_cell({"counts": {"train": 12}}) == "12"
    assert _train_cell({"counts": {"train": None}, "official_val": 0}) == "None"
