"""The console's Grad-CAM tab, its full-screen view and its dialog, driven by the Pilot on a run
with a gallery laid out as the engine lays it out (real PNGs, a real index)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from textual.geometry import Region
from textual.widgets import Checkbox, OptionList

from tests.gradcam_data import write_picture_gallery
from tests.test_image_fit import assert_keeps_shape
from tests.tui_runs import FIXED_NOW, aio, fixed_devices, plain, write_run
from tui.app import LabApp, make_app
from tui.screens.gradcam_dialog import GradcamDialog
from tui.screens.gradcam_full import GradcamFullScreen
from tui.screens.main import MainScreen
from tui.widgets.fitted_image import FittedImage
from tui.widgets.gradcam_view import GradcamView

pytestmark = pytest.mark.slow  # each test starts the console
SIZES = [(80, 24), (120, 40)]
RUN = "20250301-100000-l3-0c03"


@pytest.fixture
def app(lab_dirs: dict[str, Path]) -> LabApp:
    run = write_run(lab_dirs["runs"], RUN, 3)
    write_picture_gallery(run.path, ["cat", "dog", "owl", "emu", "yak"], per_class=4)
    return make_app(lab_dirs["runs"], lab_dirs["data"], clock=lambda: FIXED_NOW,
                    device_probe=fixed_devices, refresh_s=3600, poll_s=3600)


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        await pilot.pause(0.05)


async def on_gradcam_tab(pilot: Any) -> GradcamView:
    app = pilot.app
    main = app.screen
    assert isinstance(main, MainScreen)
    await until(pilot, lambda: main.detail is not None and main.detail.galleries)
    await pilot.press("4")
    view = app.query_one(GradcamView)
    await until(pilot, lambda: view.shown is not None and view.region.width > 0)
    await pilot.pause(0.2)
    return view


def assert_fitted(picture: FittedImage, path: Path) -> tuple[int, int]:
    """The picture's cells keep the PNG's aspect and stay in the widget's box."""
    box = picture.content_size
    cells = picture.cells
    assert_keeps_shape(PILImage.open(path).size, (box.width, box.height), cells)
    image = picture.image.region
    assert picture.content_region.contains_region(image), (picture.content_region, image)
    return cells


@aio
async def test_the_picture_widget_is_made_when_the_tab_is_opened(app: LabApp) -> None:
    """The newest run's gallery is listed at start, but textual-image (numpy, PIL) is only
    needed once a picture has a box on screen: the Grad-CAM tab opened."""
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.screen
        assert isinstance(main, MainScreen)
        await until(pilot, lambda: main.detail is not None and main.detail.galleries)
        view = app.query_one(GradcamView)
        await until(pilot, lambda: view.shown == 0)
        await pilot.pause(0.1)
        picture = view.query_one("#cam-image", FittedImage)
        assert picture.image is None and picture.cells == (0, 0)
        await on_gradcam_tab(pilot)
        assert picture.image is not None
        assert_fitted(picture, view.entries[0].path)


@aio
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_tab_keeps_each_pictures_aspect(app: LabApp, size: tuple[int, int]) -> None:
    async with app.run_test(size=size) as pilot:
        view = await on_gradcam_tab(pilot)
        picture = view.query_one("#cam-image", FittedImage)
        grid = assert_fitted(picture, view.entries[0].path)  # the grid comes first
        assert min(grid) >= 5  # big enough to see, even at 80×24
        assert "features.1 (8×8)" in plain(view.query_one("#cam-caption").content)
        view.query_one(OptionList).focus()
        await pilot.press("down")
        await until(pilot, lambda: view.shown == 1)
        await pilot.pause(0.1)
        example = assert_fitted(picture, view.entries[1].path)
        assert example != grid  # refitted for the other picture's shape
        await pilot.resize_terminal(size[0] + 17, size[1] - 3)  # and for a new box
        await pilot.pause(0.3)
        assert_fitted(picture, view.entries[1].path)


@aio
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_full_screen_view_of_one_example(app: LabApp, size: tuple[int, int]) -> None:
    async with app.run_test(size=size) as pilot:
        view = await on_gradcam_tab(pilot)
        view.query_one(OptionList).focus()
        await pilot.press("down", "enter")  # the first example, full screen
        await until(pilot, lambda: isinstance(app.screen, GradcamFullScreen))
        full = app.screen
        await pilot.pause(0.2)
        item = view.detail.galleries[0]["items"][0]
        caption = plain(full.query_one("#full-caption").content)
        for words in (f"true {item['true']}, pred {item['predicted']}", "%", "right",
                      "gradcam on features.1 (8×8)"):
            assert words in caption, caption
        picture = full.query_one(FittedImage)
        cells = assert_fitted(picture, view.entries[1].path)
        tab_cells = view.query_one("#cam-image", FittedImage).cells
        assert cells[0] > tab_cells[0] and cells[1] > tab_cells[1]  # bigger than in the tab
        assert "2/21" in plain(full.query_one("#full-title").content)
        await pilot.press("right", "right")
        await pilot.pause(0.1)
        assert full.index == 3 and "4/21" in plain(full.query_one("#full-title").content)
        second = view.detail.galleries[0]["items"][2]
        assert f"true {second['true']}" in plain(full.query_one("#full-caption").content)
        await pilot.press("left")
        await pilot.pause(0.1)
        assert full.index == 2
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert view.shown == 2  # the tab shows the picture last seen full screen
        # `f` opens it too, wherever the focus is on the main screen
        app.screen.query_one("#table").focus()
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, GradcamFullScreen))
        assert app.screen.index == 2
        await pilot.press("left", "left", "left")  # round to the last
        assert app.screen.index == 20
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))


@aio
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_gradcam_dialog_is_readable(app: LabApp, size: tuple[int, int]) -> None:
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.screen.detail is not None)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GradcamDialog))
        await pilot.pause(0.2)
        box = app.screen.query_one(Checkbox)
        drawn = "".join(s.text for s in box.render_lines(Region(0, 0, *box.size)))
        assert drawn.rstrip() == "▐X▌ only the wrong predictions", drawn
        assert app.screen.query_one("#dialog").region.contains_region(box.region)
        await pilot.press("escape")
