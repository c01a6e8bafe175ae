"""One image file to an RGB uint8 array, the same way for every reader: the folder import that
makes a data set and `lab predict` that asks a trained model about new images. Sharing it is
what makes a prediction see an image exactly as the run's own test images were seen.

Pillow's `convert("RGB")` clips 16- and 32-bit integer pixels to 0..255 (a 16-bit scan becomes
almost white), so those modes are scaled to 8 bits first; every other mode (L, LA, P, RGBA,
CMYK, YCbCr, ...) is Pillow's own conversion, alpha dropped. The size in the header is checked
against the pixel limit before a pixel is decoded: a 40000x40000 PNG is a few KB on disk.

A resize keeps the aspect ratio (`fit`): the image is scaled until it covers the target and the
centre is kept, so no object is squashed; an image of the target's aspect is simply resized.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from lab.errors import DataError

# 16-bit modes and the 32-bit integer mode that 16-bit PNGs and TIFFs often open as
_WIDE_INT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(im: Image.Image) -> Image.Image:
    """An RGB copy of `im`, wide integer pixels scaled from 0..65535 to 0..255."""
    if im.mode in _WIDE_INT:
        wide = np.asarray(im, dtype=np.float64)
        eight = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(eight, mode="L").convert("RGB")
    return im.convert("RGB")


def fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`im` scaled (bilinear) to cover `size` (width, height), keeping its aspect, and cropped
    to it around the centre; one resampling of the kept region, so nothing is resampled twice."""
    w, h = im.size
    tw, th = size
    if (w, h) == (tw, th):
        return im
    if w * th > tw * h:  # wider than the target: keep the middle columns
        keep = h * tw / th
        box = ((w - keep) / 2, 0.0, (w + keep) / 2, float(h))
    else:  # taller (or the same aspect): keep the middle rows
        keep = w * th / tw
        box = (0.0, (h - keep) / 2, float(w), (h + keep) / 2)
    return im.resize((tw, th), Image.Resampling.BILINEAR, box=box)


def fit_array(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`fit` for an (H, W, 3) uint8 array."""
    if image.shape[1::-1] == tuple(size):
        return image
    return np.asarray(fit(Image.fromarray(image), size), dtype=np.uint8)


def decode_rgb(blob: bytes, max_pixels: int,
               size: tuple[int, int] | None = None) -> np.ndarray:
    """The (H, W, 3) uint8 array of an encoded image, fitted (`fit`) to `size` (width, height)
    when given. Anything Pillow cannot read, or an image over `max_pixels`, is a
    DataError whose message is one line."""
    try:
        with Image.open(io.BytesIO(blob)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise DataError(f"{w}x{h} is {w * h} pixels, over the limit of {max_pixels} "
                                "(LAB_MAX_IMAGE_PIXELS)")
            rgb = to_rgb(im)
            if size is not None:
                rgb = fit(rgb, (int(size[0]), int(size[1])))
            return np.asarray(rgb, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types; all mean "unreadable"
        if isinstance(e, UnidentifiedImageError):  # its text names a BytesIO object
            raise DataError("not a readable image (no image format Pillow knows)") from None
        text = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"not a readable image ({type(e).__name__}: {text})") from None
