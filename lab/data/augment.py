"""Batch augmentation on the training device, replacing the study's per-image PIL transforms.

The reference pipeline ran RandomHorizontalFlip, RandomRotation, RandomCrop(32, padding=p),
Resize, ColorJitter and Normalize one image at a time in DataLoader workers, which starves a GPU.
Here the same operations run on a whole uint8 batch with per-sample random parameters: flip,
rotation and crop-translation fold into one affine matrix per sample and a single
``grid_sample`` both applies them and resizes to the target size; colour jitter and normalisation
follow as a handful of elementwise ops. No Python loop over images, no host sync, CPU or CUDA.

Conventions (the tests pin them down):

* Rotation: a positive angle turns the content **counter-clockwise as displayed** (row 0 at the
  top), like ``torchvision.transforms.functional.rotate``; +90 degrees equals
  ``torch.rot90(x, 1, dims=(-2, -1))``. Corners that come from outside the image are zero.
* Translation (``crop_padding``): whole pixels of the *source* image, drawn uniformly from the
  integers in ``[-p, p]`` exactly as ``RandomCrop(padding=p)`` does; the uncovered border is zero.
  When resizing, the shift scales with the image: 4 source pixels become 28 pixels at 224.
  ``params["translate"]`` is the (dx, dy) the content moves by, right and down positive.
* Order, as in the study: flip, rotate, translate, resize, then brightness, contrast, saturation
  (a fixed order, where ``ColorJitter`` shuffles it per image), clamp, normalise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from lab.errors import ConfigError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# ITU-R 601 luma, the weights torchvision's rgb_to_grayscale (and so ColorJitter) uses.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

Stats = Sequence[float] | Tensor


@dataclass(frozen=True)
class AugmentSpec:
    """Strengths of the training augmentations; all zero means none."""

    hflip: float = 0.0  # probability of a horizontal mirror
    rotation: float = 0.0  # max degrees, uniform in [-rotation, +rotation]
    crop_padding: float = 0.0  # max translation in whole source pixels (RandomCrop padding)
    brightness: float = 0.0  # factor uniform in [max(0, 1-b), 1+b]
    contrast: float = 0.0
    saturation: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"augment {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"augment {f.name} must be a finite number >= 0, got {value}")
        if self.hflip > 1:
            raise ConfigError(f"augment hflip is a probability in [0, 1], got {self.hflip}")
        if self.crop_padding != int(self.crop_padding):
            raise ConfigError(
                f"augment crop_padding must be a whole number of pixels, got {self.crop_padding}"
            )

    @property
    def is_identity(self) -> bool:
        """True when every strength is zero, so a loader can skip the warp entirely."""
        return all(getattr(self, f.name) == 0 for f in fields(self))


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        dtype = x.dtype if isinstance(x, Tensor) else None
        raise ConfigError(f"images must be uint8 (B,3,H,W), got {dtype} {shape}")


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ConfigError(f"image size must be an integer >= 8, got {size!r}")


def to_float(x: Tensor) -> Tensor:
    """uint8 images to float32 in [0, 1]; storage stays uint8 so the whole set fits on device."""
    return x.to(torch.float32).div_(255.0)


@lru_cache(maxsize=32)
def _stat_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    # Cached so a batch never pays a host-to-device copy (a sync on CUDA) for six constants.
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ConfigError(f"mean/std need 3 values each and std > 0, got {mean} / {std}")
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return 1.0 / s, -m / s


def _normalize(x: Tensor, mean: Stats, std: Stats) -> Tensor:
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - m) / s
    scale, shift = _stat_tensors(
        tuple(float(v) for v in mean), tuple(float(v) for v in std), x.device
    )
    return torch.addcmul(shift, x, scale)


def resize_normalize(
    x_uint8: Tensor, size: int, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD
) -> Tensor:
    """Evaluation path: the deterministic twin of ``augment_batch`` with nothing random."""
    _check_images(x_uint8)
    _check_size(size)
    x = to_float(x_uint8)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return _normalize(x, mean, std)


def sample_params(
    batch: int,
    spec: AugmentSpec,
    generator: torch.Generator | None,
    device: torch.device | str,
) -> dict[str, Tensor]:
    """Per-sample random parameters, drawn in one kernel so a batch costs one RNG launch.

    Keys: ``flip`` (bool), ``angle`` (degrees, counter-clockwise), ``translate`` ((B,2) whole
    source pixels, content shift dx right / dy down), ``brightness``/``contrast``/``saturation``
    (multiplicative factors, 1 = unchanged). Zero strengths give the neutral value.
    """
    u = torch.rand(batch, 7, generator=generator, device=device)

    def factor(strength: float, col: Tensor) -> Tensor:
        lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
        return lo + (hi - lo) * col

    pad = int(spec.crop_padding)
    return {
        "flip": u[:, 0] < spec.hflip,
        "angle": (2.0 * u[:, 1] - 1.0) * spec.rotation,
        "translate": torch.floor(u[:, 2:4] * (2 * pad + 1)).clamp_(max=2 * pad) - pad,
        "brightness": factor(spec.brightness, u[:, 4]),
        "contrast": factor(spec.contrast, u[:, 5]),
        "saturation": factor(spec.saturation, u[:, 6]),
    }


def build_theta(params: dict[str, Tensor], height: int, width: int) -> Tensor:
    """(B,2,3) matrices mapping output coords to source coords, ``affine_grid`` convention.

    Sampling point for output position v (normalised, [-1, 1]) is ``A (v - s)``: first undo the
    translation s, then the rotation, then the flip, i.e. the study's flip -> rotate -> crop
    applied forwards. The rotation is done in pixel units so a non-square image is not sheared.
    """
    angle = torch.deg2rad(params["angle"].to(torch.float32))
    cos, sin = torch.cos(angle), torch.sin(angle)
    f = 1.0 - 2.0 * params["flip"].to(torch.float32)  # -1 mirrors x
    aspect = height / width
    a00, a01 = f * cos, -f * sin * aspect
    a10, a11 = sin / aspect, cos
    t = params["translate"].to(torch.float32)
    sx, sy = t[:, 0] * (2.0 / width), t[:, 1] * (2.0 / height)
    bx = -(a00 * sx + a01 * sy)
    by = -(a10 * sx + a11 * sy)
    return torch.stack([a00, a01, bx, a10, a11, by], dim=-1).view(-1, 2, 3)


@lru_cache(maxsize=32)
def _base_grid(size: int, height: int, width: int, device: torch.device) -> Tensor:
    # Output pixel centres in the source frame, clamped to the outermost source pixel centres.
    # The clamp is what F.interpolate (and PIL) do at the edges when upscaling; without it the
    # outer half pixel would blend with the zero padding and darken the border of every image.
    eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=device)
    grid = F.affine_grid(eye, [1, 1, size, size], align_corners=False).view(1, size * size, 2)
    lo = torch.tensor([-1.0 + 1.0 / width, -1.0 + 1.0 / height], device=device)
    return torch.maximum(torch.minimum(grid, -lo), lo)


def _gray(x: Tensor) -> Tensor:
    r, g, b = x.unbind(dim=1)
    w0, w1, w2 = _GRAY_WEIGHTS
    return (w0 * r + w1 * g + w2 * b).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)


def apply_params(
    x_uint8: Tensor,
    size: int,
    spec: AugmentSpec,
    params: dict[str, Tensor],
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
) -> Tensor:
    """Apply given per-sample parameters; split from sampling so tests can force exact values.

    ``spec`` only decides which colour steps run at all (a zero strength skips its step).
    """
    _check_images(x_uint8)
    _check_size(size)
    b, _, h, w = x_uint8.shape
    x = to_float(x_uint8)
    theta = build_theta(params, h, w)
    base = _base_grid(size, h, w, x.device).expand(b, -1, -1)
    # grid = base @ A^T + bias: the affine applied after the clamp, one batched kernel.
    grid = torch.baddbmm(theta[:, :, 2].unsqueeze(1), base, theta[:, :, :2].transpose(1, 2))
    grid = grid.view(b, size, size, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if spec.brightness:
        x = (x * params["brightness"].view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
    if spec.contrast:
        x = _blend(x, _gray(x).mean(dim=(-2, -1), keepdim=True), params["contrast"])
    if spec.saturation:
        x = _blend(x, _gray(x), params["saturation"])
    x = x.clamp_(0.0, 1.0)
    return _normalize(x, mean, std)


def augment_batch(
    x_uint8: Tensor,
    size: int,
    spec: AugmentSpec,
    generator: torch.Generator | None = None,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
) -> Tensor:
    """Training path: random geometry and colour per sample, resized and normalised in one go."""
    _check_images(x_uint8)
    params = sample_params(x_uint8.shape[0], spec, generator, x_uint8.device)
    return apply_params(x_uint8, size, spec, params, mean, std)
