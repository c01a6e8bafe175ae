"""`lab predict`: a trained run's answers about new images, read as its test images were.

One tiny Level 3 run on digits (trained once for the module) answers every test; the run's own
test images, written out as PNGs (lossless), must be scored exactly as its test evaluation
scored them."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lab.cli import main
from lab.data.archive import Limits
from lab.data.images import decode_rgb, to_rgb
from lab.explain.predict import heatmap_name, label_of
from tests.cli_inprocess import one_click_command


# ---- fast: decoding and layout rules, no model --------------------------------------------
def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


GRAY = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # 8x64 ramp


@pytest.mark.parametrize("make", [
    lambda: Image.fromarray(GRAY, "L"),
    lambda: Image.fromarray(GRAY.astype(np.uint16) * 257),  # I;16: was clipped to white
    lambda: Image.fromarray(GRAY.astype(np.int32) * 257, "I"),
    lambda: Image.fromarray(np.dstack([GRAY, np.full_like(GRAY, 128)]), "LA"),
    lambda: Image.fromarray(np.dstack([GRAY] * 3 + [np.full_like(GRAY, 7)]), "RGBA"),
    lambda: Image.fromarray(GRAY, "L").convert("P"),
], ids=["L", "I;16", "I", "LA", "RGBA", "P"])
def test_every_mode_decodes_to_the_same_gray_rgb(make: Any) -> None:
    """Any mode Pillow reads becomes the RGB a plain 8-bit gray image of the same picture does:
    16- and 32-bit pixels are scaled to 8 bits, not clipped (Pillow's convert clips)."""
    image = make()
    got = decode_rgb(_png(image, "TIFF" if image.mode == "I" else "PNG"), 10**6)
    assert got.dtype == np.uint8 and got.shape == (8, 64, 3)
    assert np.array_equal(got, np.dstack([GRAY] * 3))
    assert np.array_equal(np.asarray(to_rgb(image)), got)


def test_cmyk_and_resize_and_limits() -> None:
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red
    got = decode_rgb(_png(cmyk, "JPEG"), 10**6, (16, 12))
    assert got.shape == (12, 16, 3) and got[..., 0].min() > 200 and got[..., 1].max() < 60
    with pytest.raises(Exception, match=r"40x30 is 1200 pixels, over the limit of 1000"):
        decode_rgb(_png(cmyk, "JPEG"), 1000)
    with pytest.raises(Exception, match=r"^not a readable image \(no image format Pillow "
                                        r"knows\)$"):
        decode_rgb(b"hello, not a picture", 1000)


def test_folder_import_scales_16_bit_images(tmp_path: Path) -> None:
    """The import shares the decoder: a 16-bit PNG in a data set is no longer saturated."""
    from lab.data.folder import read_image_folder

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(GRAY.astype(np.uint16) * 257).save(tmp_path / split / cls / "x.png")
    imported = read_image_folder(tmp_path)
    assert np.array_equal(imported.train_x[0], np.dstack([GRAY] * 3))


@pytest.mark.parametrize(("parts", "expected"), [
    (("3", "a.png"), ("3", None)),
    (("test", "3", "a.png"), ("3", None)),
    (("train", "7", "deep", "a.png"), ("7", None)),
    (("zebra", "a.png"), (None, "zebra")),
    (("val", "zebra", "a.png"), (None, "zebra")),
    (("a.png",), (None, None)),
    (("test", "a.png"), (None, "test")),  # a split folder without class folders
])
def test_label_of_a_path(parts: tuple[str, ...], expected: tuple[Any, Any]) -> None:
    assert label_of(parts, [str(i) for i in range(10)]) == expected


def test_heatmap_names_are_unique_and_safe() -> None:
    from lab.data.sources import Entry

    taken: set[str] = set()
    names = [heatmap_name(Entry(n, p), taken) for n, p in [
        ("/x/a.png", ()), ("/y/a.png", ()), ("z", ("..", "b c.png")), ("w", ("3", "a.png"))]]
    assert names == ["a.png", "a-2.png", "-b_c.png", "3-a.png"]
    assert all("/" not in n for n in names)


# ---- one trained run for the rest -----------------------------------------------------------
@pytest.fixture(scope="module")
def cli() -> Any:
    yield from one_click_command()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from lab.core.prepare import split_data
    from lab.launch.run import start_run
    from lab.levels import level_config

    root = tmp_path_factory.mktemp("predict")
    runs, data = root / "runs", root / "data"
    config = level_config(3).replace(dataset="digits", image_size=16, device="cpu", epochs=1,
                                     lr=3e-3, cnn_channels=(8, 16, 16, 32), cnn_hidden=32,
                                     gradcam=0)
    run, result = start_run(config, runs, data)
    dataset, _split, test_x, test_y = split_data(config, data)
    tree = root / "labelled"
    for i, (x, y) in enumerate(zip(test_x, test_y, strict=True)):
        folder = tree / "test" / dataset.classes[y]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(folder / f"{i:04d}.png")
    return {"runs": runs, "data": data, "run": run, "result": result, "tree": tree,
            "test_x": test_x, "test_y": test_y, "root": root}


@pytest.fixture(scope="module")
def trained(trained_run: dict[str, Any]) -> Any:
    from lab.explain.trained import load_trained

    return load_trained(trained_run["run"], "last", "cpu", data_dir=trained_run["data"])


def lab(argv: list[str], run: dict[str, Any], capsys: pytest.CaptureFixture[str],
        ) -> tuple[int, str, str]:
    """`lab predict RUN ARGV...` in this process: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as stopped:
        main(["predict", run["run"].id, *argv, "--runs-dir", str(run["runs"]),
              "--data-dir", str(run["data"]), "--device", "cpu"])
    captured = capsys.readouterr()
    return int(stopped.value.code), captured.out, captured.err


def _predict(trained: Any, paths: list[Path], **kwargs: Any) -> Any:
    from lab.explain.predict import predict_paths

    return predict_paths(trained, paths, **kwargs)


@pytest.mark.slow
def test_trained_records_what_the_test_saw(trained: Any, trained_run: dict[str, Any]) -> None:
    assert trained.classes == trained_run["result"]["classes"]
    assert trained.image_size == 16 and trained.stored_size == (32, 32)
    assert trained.tta is False and not trained.model.training  # digits: not mirror-safe
    assert trained.weights.name == "checkpoint.pt" and trained.epoch == 1


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["split", "classes"])
def test_labelled_folder_scores_as_the_run_tested(trained: Any, trained_run: dict[str, Any],
                                                  layout: str) -> None:
    """train|val|test/<class>/ and <class>/ trees: accuracy, per-class table and confusion
    equal the run's own test evaluation on the same images."""
    tree = trained_run["tree"] if layout == "split" else trained_run["tree"] / "test"
    report = _predict(trained, [tree], batch_size=37)
    result = trained_run["result"]
    assert report.summary["images"] == len(trained_run["test_y"]) == len(report.predictions)
    assert report.summary["accuracy"] == result["test_acc"]
    assert report.summary["confusion"] == result["confusion"]
    assert report.summary["per_class"] == result["per_class"]


@pytest.mark.slow
def test_folder_streams_in_batches(trained: Any, trained_run: dict[str, Any]) -> None:
    """A folder larger than the batch is never decoded whole: at most one batch is held, and
    the answers do not depend on the batch size."""
    folder = trained_run["tree"] / "test" / "3"
    n = len(list(folder.iterdir()))
    small = _predict(trained, [folder], batch_size=4, top_k=10)
    assert n > 8 and small.stream.peak_held == 4 and small.stream.batches == -(-n // 4)
    whole = _predict(trained, [folder], batch_size=n, top_k=10)
    assert whole.stream.peak_held == n
    for a, b in zip(small.predictions, whole.predictions, strict=True):
        assert a["file"] == b["file"] and [t["class"] for t in a["top"]][:1] == \
            [t["class"] for t in b["top"]][:1]
        assert np.allclose([t["probability"] for t in a["top"]],
                           [t["probability"] for t in b["top"]], atol=1e-5)


def _mode_images(folder: Path, base: np.ndarray) -> dict[str, Path]:
    """The same digit in many formats and modes, and a huge copy."""
    folder.mkdir(parents=True)
    gray = base[..., 0]
    rgb = Image.fromarray(base)
    files = {
        "rgb.png": rgb, "gray.png": Image.fromarray(gray, "L"),
        "gray16.png": Image.fromarray(gray.astype(np.uint16) * 257),
        "rgba.png": rgb.convert("RGBA"), "la.png": Image.fromarray(gray, "L").convert("LA"),
        "palette.png": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "photo.jpg": rgb, "cmyk.jpg": rgb.convert("CMYK"), "bitmap.bmp": rgb,
        "huge.png": rgb.resize((3200, 3200), Image.Resampling.NEAREST),
    }
    # what the import makes of the huge one: Pillow's bilinear resize to the stored size
    files["huge-imported.png"] = files["huge.png"].resize((32, 32), Image.Resampling.BILINEAR)
    for name, image in files.items():
        image.save(folder / name)
    return {name: folder / name for name in files}


@pytest.mark.slow
def test_any_mode_and_size_is_predicted_as_its_rgb_twin(trained: Any,
                                                        trained_run: dict[str, Any]) -> None:
    """Lossless modes give exactly the answer of the plain RGB PNG; lossy JPEG and the huge
    copy (resized to the stored 32x32 first, as the import would) are answered too."""
    digit = trained_run["test_x"][0]  # gray digits: R == G == B
    files = _mode_images(trained_run["root"] / "modes", digit)
    report = _predict(trained, [trained_run["root"] / "modes"], top_k=10)
    by_name = {Path(a["file"]).name: a for a in report.predictions}
    assert set(by_name) == set(files) and not report.errors
    reference = by_name["rgb.png"]["top"]
    for name in ("gray.png", "gray16.png", "rgba.png", "la.png", "palette.png", "bitmap.bmp"):
        assert by_name[name]["top"] == reference, name
    assert by_name["huge.png"]["top"] == by_name["huge-imported.png"]["top"]
    assert by_name["huge.png"]["top"][0]["class"] == reference[0]["class"]
    for answer in report.predictions:
        probs = [t["probability"] for t in answer["top"]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5


def _bad_files(folder: Path, good: np.ndarray) -> None:
    folder.mkdir(parents=True)
    Image.fromarray(good).save(folder / "good.png")
    (folder / "text.png").write_text("not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    whole = _png(Image.fromarray(good))
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    Image.new("L", (2000, 1000)).save(folder / "too-many-pixels.png")
    (folder / "notes.txt").write_text("a note beside the images")


@pytest.mark.slow
def test_bad_files_one_line_each_rest_predicted(trained_run: dict[str, Any], cli: Any,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = trained_run["root"] / "bad"
    _bad_files(folder, trained_run["test_x"][1])
    monkeypatch.setenv("LAB_MAX_IMAGE_PIXELS", "1000000")
    code, out, err = lab([str(folder), "--json"], trained_run, capsys)
    assert code == 0
    answers = json.loads(out)
    assert [Path(a["file"]).name for a in answers["predictions"]] == ["good.png"]
    lines = err.strip().splitlines()
    skipped = sorted(line.split(": ")[1].rsplit("/", 1)[-1] for line in lines
                     if line.startswith("lab: skipped"))
    assert skipped == ["cut.png", "empty.jpg", "text.png", "too-many-pixels.png"], err
    assert any("1 file(s) that are not images by name skipped" in line for line in lines)
    assert len(lines) == 5 and "2000x1000 is 2000000 pixels" in err
    # nothing readable at all: one line, non-zero
    (folder / "good.png").unlink()
    code, out, err = lab([str(folder)], trained_run, capsys)
    assert code != 0 and out == ""
    assert err.strip().splitlines()[-1] == \
        "lab: error: nothing could be predicted: all 4 file(s) failed"


@pytest.mark.slow
def test_archives_and_unknown_class_folder(trained_run: dict[str, Any], trained: Any) -> None:
    """A .zip and a .tar.gz of a labelled tree are read member by member; a class folder the
    run does not know is one note, its image predicted but not scored; a broken member is one
    error."""
    root = trained_run["root"] / "archives"
    root.mkdir()
    images = trained_run["test_x"][:3]
    labels = [trained.classes[y] for y in trained_run["test_y"][:3]]
    members = {f"test/{c}/{i}.png": _png(Image.fromarray(x))
               for i, (x, c) in enumerate(zip(images, labels, strict=True))}
    members["test/zebra/z.png"] = _png(Image.fromarray(images[0]))
    members["test/3/broken.png"] = b"\x89PNG broken"
    members["readme.txt"] = b"hello"
    with zipfile.ZipFile(root / "set.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with tarfile.open(root / "set.tar.gz", "w:gz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    for archive in ("set.zip", "set.tar.gz"):
        report = _predict(trained, [root / archive])
        assert len(report.predictions) == 4 and len(report.errors) == 1, archive
        assert report.errors[0]["file"].endswith("!test/3/broken.png")
        assert report.summary["images"] == 3
        assert [a.get("label") for a in report.predictions if "label" in a] == labels
        assert any("folder 'zebra' is not a class of run" in n for n in report.notes)
        assert any("1 file(s) that are not images by name" in n for n in report.notes)


@pytest.mark.slow
def test_json_csv_and_table_agree(trained_run: dict[str, Any], cli: Any,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = trained_run["tree"] / "test"  # <class>/ folders: labelled
    code, out, _ = lab([str(folder), "--json", "--top-k", "2"], trained_run, capsys)
    assert code == 0
    answers = json.loads(out)
    assert answers["run_id"] == trained_run["run"].id and answers["tta"] is False
    assert answers["labelled"]["images"] == len(answers["predictions"])
    code, out, _ = lab([str(folder), "--csv", "--top-k", "2"], trained_run, capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == len(answers["predictions"])
    for row, answer in zip(rows, answers["predictions"], strict=True):
        assert row["file"] == answer["file"] and row["label"] == answer["label"]
        assert row["class_1"] == answer["top"][0]["class"]
        assert float(row["probability_2"]) == pytest.approx(answer["top"][1]["probability"],
                                                            abs=1e-6)
    code, out, _ = lab([str(folder), "--top-k", "2"], trained_run, capsys)
    assert code == 0 and "accuracy" in out and "Per-class report (labelled images)" in out


@pytest.mark.slow
def test_gradcam_heatmaps_decode_and_show(trained_run: dict[str, Any], cli: Any,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = trained_run["tree"] / "test" / "1"
    out_dir = trained_run["root"] / "heat"
    code, out, err = lab([str(folder), "--gradcam", "--out", str(out_dir), "--json"],
                         trained_run, capsys)
    assert code == 0, err
    answers = json.loads(out)["predictions"]
    pngs = sorted(out_dir.iterdir())
    assert len(pngs) == len(answers) and {str(p) for p in pngs} == {a["heatmap"] for a in
                                                                     answers}
    for png in pngs:
        with Image.open(png) as im:
            im.load()
            assert im.size == (262, 150) and im.mode == "RGB"
    one = answers[0]
    code, out, err = lab([one["file"], "--show", "--out", str(out_dir)], trained_run, capsys)
    assert code == 0, err
    # the answer in the table, and again in the caption beside the drawn heatmap
    best = f"{one['top'][0]['class']} {100 * one['top'][0]['probability']:.1f}%"
    assert out.count(best) == 2, out
    assert "1 heatmap(s) in" in out and "true" not in out  # a file named alone: no label


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "message"), [
    (["nope-run"], "lab: error: no run 'nope-run' in "),
    (["RUN", "/no/such/picture.png"], "lab: error: no file or folder at /no/such/picture.png"),
    (["RUN", "DIR", "--weights", "middle"], "--weights 'middle': must be one of last, best"),
    (["RUN", "DIR", "--top-k", "0"], "--top-k 0: must be between 1 and 1000"),
    (["RUN", "DIR", "--json", "--csv"], "--json and --csv: choose one"),
])
def test_bad_input_is_one_line(trained_run: dict[str, Any], cli: Any,
                               capsys: pytest.CaptureFixture[str], argv: list[str],
                               message: str) -> None:
    argv = [{"RUN": trained_run["run"].id, "DIR": str(trained_run["tree"])}.get(a, a)
            for a in argv]
    with pytest.raises(SystemExit) as stopped:
        main(["predict", *argv, *([] if len(argv) > 1 else ["x.png"]), "--runs-dir",
              str(trained_run["runs"]), "--data-dir", str(trained_run["data"])])
    captured = capsys.readouterr()
    assert stopped.value.code != 0 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err


@pytest.mark.slow
def test_tta_only_where_the_run_allows(trained: Any, trained_run: dict[str, Any]) -> None:
    folder = trained_run["tree"] / "test" / "0"
    report = _predict(trained, [folder], tta=True)
    assert report.tta is False and report.notes[0].startswith("flip TTA off: run ")
    assert _predict(trained, [folder]).tta is False


def test_limits_reach_archive_reading(tmp_path: Path) -> None:
    """A zip whose member is over LAB_MAX_FILE_BYTES: that member is one error."""
    from lab.data.sources import Entry, entries

    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("big.png", b"x" * 5000)
        zf.writestr("small.png", b"x" * 10)
    got = [e for e in entries([tmp_path / "a.zip"], Limits(file_bytes=1000))
           if isinstance(e, Entry)]
    assert [e.error is not None for e in got] == [True, False]
    assert "over the limit of 1000 B" in str(got[0].error)


# ---- the console's Predict action -------------------------------------------------------------
@pytest.mark.slow
def test_console_predict_dialog_and_screen(trained_run: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`p` on a finished run: a path that is not there is one line in the dialog; a labelled
    folder gives the answers, the accuracy and a heatmap drawn beside them; a folder of broken
    files is one line; escape goes back and the heatmaps' temporary folder is gone."""
    import asyncio
    import shutil

    from textual.widgets import Input, Static

    from tests.test_tui import started
    from tests.tui_runs import plain, until
    from tui.app import make_app
    from tui.screens.predict import PredictDialog, PredictScreen
    from tui.widgets.fitted_image import FittedImage

    monkeypatch.setenv("LAB_STATE_FILE", str(tmp_path / "console-state.json"))
    runs = tmp_path / "runs"
    shutil.copytree(trained_run["runs"], runs)
    small = tmp_path / "small"  # two classes, three images each: Grad-CAM stays cheap
    for cls in ("0", "1"):
        shutil.copytree(trained_run["tree"] / "test" / cls, small / cls,
                        ignore=lambda _d, names: sorted(names)[3:])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_text("no picture")
    app = make_app(runs, trained_run["data"], device_probe=lambda: [], refresh_s=3600,
                   poll_s=3600)

    async def drive() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await started(pilot, app)
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, PredictDialog))
            dialog = app.screen
            dialog.query_one("#predict-path", Input).value = str(tmp_path / "nowhere")
            await pilot.press("enter")
            await pilot.pause()
            error = dialog.query_one("#job-error", Static)
            assert plain(error.content).strip() == \
                f"✗ no file or folder at '{tmp_path / 'nowhere'}'"
            assert app.screen is dialog
            dialog.query_one("#predict-path", Input).value = str(small)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, PredictScreen))
            screen = app.screen
            await until(pilot, lambda: screen.report is not None, timeout=120)
            shown = plain(screen.query_one("#predict-table", Static).content)
            assert "6 image(s)" in shown and "labelled image(s)" in shown
            assert f"accuracy {100 * screen.report.summary['accuracy']:.2f}%" in shown
            image = screen.query_one(FittedImage)
            await until(pilot, lambda: image.cells != (0, 0))
            first = plain(screen.query_one("#predict-caption", Static).content)
            await pilot.press("right")
            assert screen.index == 1
            assert plain(screen.query_one("#predict-caption", Static).content) != first
            folder = screen.heatmaps
            assert len(list(folder.iterdir())) == 6
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, PredictScreen))
            await until(pilot, lambda: not folder.exists())
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, PredictDialog))
            app.screen.query_one("#predict-path", Input).value = str(broken)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, PredictScreen))
            table = app.screen.query_one("#predict-table", Static)
            await until(pilot, lambda: "✗" in plain(table.content), timeout=120)
            assert plain(table.content).strip() == \
                "✗ nothing could be predicted: 1 file(s) failed"

    asyncio.run(drive())


def test_a_tar_cut_short_keeps_what_was_read(tmp_path: Path) -> None:
    """Members before the damage are given; then the archive itself is one error."""
    from lab.data.sources import Entry, entries

    blob = _png(Image.new("L", (8, 8)))
    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        for i in range(6):
            info = tarfile.TarInfo(f"{i}.png")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    whole = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[: len(whole) // 2])
    got = [e for e in entries([tmp_path / "cut.tar"], Limits()) if isinstance(e, Entry)]
    good, bad = [e for e in got if e.error is None], [e for e in got if e.error is not None]
    assert 1 <= len(good) < 6 and all(e.blob == blob for e in good)
    assert len(bad) == 1 and bad[0].name == str(tmp_path / "cut.tar")
    assert bad[0] is got[-1] and "cut short" in str(bad[0].error)
