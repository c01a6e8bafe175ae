"""`lab report`: real runs in, a self-contained Markdown folder out, and never half of one."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab.errors import ConfigError, DataError, NotFoundError
from lab.launch.run import start_run
from lab.levels import level_config
from lab.runs import RunDir, list_runs, new_run
from lab.views import figures
from lab.views.compare import comparison
from lab.views.report import write_report
from lab.views.states import weakest_classes

pytestmark = pytest.mark.slow  # a study of real runs

LINK_RE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
TINY = dict(dataset="digits", image_size=16, device="cpu", gradcam=0)


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models train as fast on one thread, and several threads crawl (6x here) when other
    test processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "120"})


def tree(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def png(path: Path, size: tuple[int, int], seed: int) -> None:
    """A real, non-uniform picture (the gallery contract only says PNG)."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    pixels = (ramp * 0.7 + rng.integers(0, 70, (h, w, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path)


def fake_gallery(run: RunDir, classes: list[str]) -> list[dict]:
    """A Grad-CAM gallery exactly as the contract in lab/gradcam.py lays it out, plus a second,
    newer gallery listed first: the report must still prefer the one named `gradcam`."""
    base = run.path / "gradcam"
    (base / "gradcam").mkdir(parents=True)
    items = []
    for i, name in enumerate(classes[:4]):
        predicted = name if i % 2 == 0 else classes[(i + 1) % len(classes)]
        file = f"{name}-{'correct' if predicted == name else 'wrong'}-1.png"
        png(base / "gradcam" / file, (64, 32), i)
        items.append({"file": file, "test_index": 10 + i, "true": name, "predicted": predicted,
                      "confidence": 0.9 - 0.1 * i, "correct": predicted == name,
                      "method": "gradcam", "layer": "features.3",
                      "caption": f"true {name} · pred {predicted} · {90 - 10 * i}%"})
    png(base / "gradcam" / "grid.png", (256, 128), 99)
    (base / "gradcam" / "index.json").write_text(json.dumps(
        {"method": "gradcam", "layer": "features.3", "grid": "grid.png", "items": items}))
    (base / "other").mkdir()
    png(base / "other" / "grid.png", (64, 64), 7)
    entry = {"method": "gradcam", "layer": "features.3", "count": len(items),
             "filter": {"class": None, "wrong_only": False}, "created": "2024-01-01T00:00:00"}
    (base / "index.json").write_text(json.dumps({"galleries": [
        {**entry, "name": "other", "grid": "other/grid.png"},
        {**entry, "name": "gradcam", "grid": "gradcam/grid.png"}]}))
    return items


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two real runs on digits (Level 1 from scratch, a tiny Level 3 with a gallery)."""
    root = tmp_path_factory.mktemp("report")
    runs, data = root / "runs", root / "data"
    l1 = level_config(1).replace(weights="none", epochs=1, **TINY)
    l3 = level_config(3).replace(epochs=2, lr=3e-3, cnn_channels=(8, 16, 16, 32), cnn_hidden=32,
                                 **TINY)
    with one_thread():
        run1, result1 = start_run(l1, runs, data)
        run3, result3 = start_run(l3, runs, data)
    items = fake_gallery(run3, result3["classes"])
    return {"runs": runs, "l1": run1, "l3": run3, "r1": result1, "r3": result3, "items": items}


@pytest.fixture(scope="module")
def report(study: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("out") / "report"
    written = write_report(study["runs"], out_dir=out)
    return {"out": out, "written": written, "md": (out / "report.md").read_text()}


def sections(md: str) -> dict[str, str]:
    """The text under each `## ` heading, keyed by the heading."""
    parts = re.split(r"^## ", md, flags=re.M)[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


def test_every_image_link_is_a_real_png(report: dict, study: dict) -> None:
    out, md = report["out"], report["md"]
    links = LINK_RE.findall(md)
    l1, l3 = study["l1"].id, study["l3"].id
    assert sorted(links) == sorted([
        "figures/test-accuracy.png", "figures/val-accuracy.png",
        f"figures/{l1}-curves.png", f"figures/{l3}-curves.png",
        f"figures/{l1}-confusion.png", f"figures/{l3}-confusion.png",
        f"figures/{l3}-gradcam-gradcam.png"])
    for link in links:
        path = out / link
        assert path.is_file() and path.resolve().is_relative_to(out.resolve()), link
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert 200 <= img.width <= 4000 and 100 <= img.height <= 4000, (link, img.size)
            pixels = np.asarray(img.convert("RGB"))
        assert pixels.std() > 5, f"{link} is (almost) uniform"
    # the folder holds exactly what is linked, and --json names the same files
    assert sorted(str(p.relative_to(out)) for p in (out / "figures").iterdir()) == sorted(links)
    assert sorted(report["written"]["figures"]) == sorted(str(out / link) for link in links)
    assert report["written"]["report"] == str(out / "report.md")
    assert report["written"]["runs"] == [l1, l3]


def test_comparison_matches_the_results(report: dict, study: dict) -> None:
    md = report["md"]
    acc1, acc3 = study["r1"]["test_acc"], study["r3"]["test_acc"]
    row = {line.split("`")[-2]: line for line in sections(md)["Comparison"].splitlines()
           if line.startswith("| ") and "`" in line}
    assert set(row) == {study["l1"].id, study["l3"].id}
    assert f"**{100 * acc1:.2f}%**" in row[study["l1"].id]
    assert f"**{100 * acc3:.2f}%**" in row[study["l3"].id]
    assert f"| {100 * (acc3 - acc1):+.2f} |" in row[study["l3"].id]
    assert "| +0.00 |" in row[study["l1"].id]
    rows = {r["run_id"]: r for r in comparison(study["runs"])}
    assert rows[study["l3"].id]["test_acc"] == acc3  # the rows the report rendered
    # the level table carries the study's presets
    levels = sections(md)["The study's levels"]
    for needle in ("93.54%", "94.74%", "65.89%", "224×224", "custom CNN", "0.0001"):
        assert needle in levels


def test_per_run_sections(report: dict, study: dict) -> None:
    parts = sections(report["md"])
    l1 = next(v for k, v in parts.items() if study["l1"].id in k and k.startswith("Level 1"))
    l3 = next(v for k, v in parts.items() if study["l3"].id in k and k.startswith("Level 3"))
    assert "No Grad-CAM gallery for this run" in l1
    assert "No Grad-CAM gallery" not in l3
    for item in study["items"]:  # every caption listed under the grid
        assert item["caption"] in l3
    assert "figures/" + study["l3"].id + "-gradcam-gradcam.png" in l3
    grid = study["l3"].path / "gradcam" / "gradcam" / "grid.png"
    copied = report["out"] / "figures" / f"{study['l3'].id}-gradcam-gradcam.png"
    assert copied.read_bytes() == grid.read_bytes()
    for section, result in ((l1, study["r1"]), (l3, study["r3"])):
        per_class = section.split("### Per-class report")[1].split("### Confusion")[0]
        table = [ln for ln in per_class.splitlines()
                 if ln.startswith("| ") and not ln.startswith("| Class")]
        assert len(table) == len(result["classes"]) + 1  # + macro average
        weak = weakest_classes(result["per_class"])  # only those clearly below the rest
        assert sum("**weak**" in ln for ln in table) == len(weak)
        assert "### Most-confused pairs" in section
        top = result["most_confused"][0]
        assert f"| {top['true']} | {top['predicted']} | {top['count']} |" in section
    assert "horizontal flip off" in l3  # the run's notes travel with it


def test_confusion_heatmap_has_every_class(tmp_path: Path) -> None:
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
    cm = np.random.default_rng(0).integers(0, 50, (10, 10)) + np.eye(10, dtype=int) * 400
    fig = figures.confusion_figure(cm.tolist(), classes)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in cm.ravel())
    width, height = (fig.get_size_inches() * figures.DPI).round().astype(int)
    path = figures.save(fig, tmp_path / "cm.png")
    with Image.open(path) as img:
        assert img.size == (width, height)
    # many classes: no counts, names thinned to fit, the figure stays a sane size
    many = [f"c{i}" for i in range(150)]
    fig = figures.confusion_figure(np.eye(150, dtype=int).tolist(), many)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == many[::3] and not fig.axes[0].texts
    assert max(fig.get_size_inches()) * figures.DPI <= 4000
    with pytest.raises(ValueError):
        figures.confusion_figure([[1, 2], [3, 4]], ["a", "b", "c"])


def test_figures_do_not_accumulate(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    epochs = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 1 - 0.5 / e,
               "val_acc": 1 - 0.6 / e} for e in range(1, 6)]
    for i in range(5):
        figures.save(figures.run_curves_figure(epochs, "x"), tmp_path / f"c{i}.png")
        figures.save(figures.val_curves_figure({"a": epochs, "b": epochs[:2]}), tmp_path / "v.png")
        figures.save(figures.accuracy_bar_figure(["L1", "L2"], [0.9, None], [0.93, None]),
                     tmp_path / "b.png")
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is Figure]
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()


def test_no_finished_runs_is_one_error_and_writes_nothing(lab_dirs: dict) -> None:
    runs, out = lab_dirs["runs"], lab_dirs["runs"].parent / "out"
    with pytest.raises(NotFoundError) as err:
        write_report(runs, out_dir=out)
    assert "lab demo" in str(err.value) and "lab run --level N" in str(err.value)
    assert not out.exists() and not runs.exists()
    new_run(runs, level_config(3).replace(**TINY))  # created, never finished
    with pytest.raises(NotFoundError):
        write_report(runs)
    assert not (runs / "report").exists()
    assert [p.name for p in runs.iterdir() if p.name.startswith(".")] == []


def test_cli_report(study: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli-report"
    proc = lab("report", "-o", str(out), "--runs-dir", str(study["runs"]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{out / 'report.md'}\n"
    assert (out / "report.md").is_file()
    proc = lab("report", study["l3"].id[:18], "-o", str(out), "--runs-dir", str(study["runs"]),
               "--json")
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)
    assert written["runs"] == [study["l3"].id]
    assert all(Path(f).is_file() for f in written["figures"])
    # the L1 figures of the first report went with it: the folder is this report only
    assert not list((out / "figures").glob(f"{study['l1'].id}*"))
    before = tree(out)
    fresh = tmp_path / "never"
    for ref, target, code in (("no-such-run", out, 3), ("../etc", fresh, 2)):
        proc = lab("report", ref, "-o", str(target), "--runs-dir", str(study["runs"]))
        assert proc.returncode == code, proc
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1
        assert proc.stderr.startswith("lab: error: ")
    assert tree(out) == before and not fresh.exists()


def test_failed_report_keeps_the_old_one(study: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(study["runs"], runs)
    out = tmp_path / "out"
    write_report(runs, out_dir=out)
    before = tree(out)
    l3 = runs / study["l3"].id
    (l3 / "result.json").write_text('{"test_acc": 0.5, "classes": [')  # torn write
    proc = lab("report", "-o", str(out), "--runs-dir", str(runs))
    assert proc.returncode == 4 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "is corrupt" in proc.stderr
    (l3 / "result.json").write_text(json.dumps({**study["r3"], "per_class": [{"class": "0"}]}))
    with pytest.raises(DataError, match=r"per_class\[0\] has no field 'precision'"):
        write_report(runs, out_dir=out)  # refused while reading, against the result's schema
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs"]  # no temp folder left
    # a good report replaces it whole
    shutil.copyfile(study["l3"].result_path, l3 / "result.json")
    write_report(runs, [study["l1"].id], out_dir=out)
    assert tree(out) != before and not list((out / "figures").glob(f"{study['l3'].id}*"))


def test_never_replaces_a_folder_it_did_not_write(study: dict, tmp_path: Path) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes\n")
    with pytest.raises(ConfigError, match="not a lab report"):
        write_report(study["runs"], out_dir=mine)
    assert (mine / "report.md").read_text() == "my own notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_report(study["runs"], out_dir=empty)
    assert (empty / "report.md").is_file()


def test_gallery_that_points_outside_is_not_copied(study: dict, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(study["runs"], runs)
    index = runs / study["l3"].id / "gradcam" / "index.json"
    index.write_text(json.dumps({"galleries": [
        {"name": "gradcam", "method": "gradcam", "layer": "x", "grid": "../../../secret.png"}]}))
    png(tmp_path / "secret.png", (300, 200), 1)
    md = (Path(write_report(runs, out_dir=tmp_path / "a")["report"])).read_text()
    assert "has no readable grid image" in md and "secret" not in md
    index.write_text(json.dumps({"galleries": [{"name": "gradcam", "grid": None}]}))
    md = (Path(write_report(runs, out_dir=tmp_path / "b")["report"])).read_text()
    assert "is empty" in md
    index.write_text("{not json")
    md = (Path(write_report(runs, out_dir=tmp_path / "c")["report"])).read_text()
    assert "Grad-CAM index unreadable" in md


def test_a_real_end_of_run_gallery(lab_dirs: dict) -> None:
    """The gallery lab.explain writes after a run (not a hand-made one) lands in the report."""
    config = level_config(3).replace(**{**TINY, "gradcam": 1}, epochs=1,
                                     cnn_channels=(8, 16, 16, 32), cnn_hidden=32)
    with one_thread():
        run, _ = start_run(config, lab_dirs["runs"], lab_dirs["data"])
    index = json.loads((run.path / "gradcam" / "index.json").read_text())
    name = index["galleries"][0]["name"]
    items = json.loads((run.path / "gradcam" / name / "index.json").read_text())["items"]
    assert items
    written = write_report(lab_dirs["runs"])
    assert written["report"] == str(lab_dirs["runs"] / "report" / "report.md")
    md = Path(written["report"]).read_text()
    link = f"figures/{run.id}-gradcam-{name}.png"
    assert f"]({link})" in md
    with Image.open(lab_dirs["runs"] / "report" / link) as img:
        assert img.format == "PNG" and min(img.size) >= 32
    for item in items:
        assert item["caption"].replace("|", "\\|") in md
    assert [r.id for r in list_runs(lab_dirs["runs"])] == [run.id]  # the report is no run
