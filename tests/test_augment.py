"""The batched augmentation must reproduce what the study's per-image transforms did."""

from __future__ import annotations

import pytest
import torch

from lab.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentSpec,
    apply_params,
    augment_batch,
    build_theta,
    resize_normalize,
    sample_params,
    to_float,
)
from lab.errors import ConfigError

RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # output in [0, 1], as before Normalize

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA")]),
]


def _images(b: int = 4, h: int = 32, w: int = 32, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8).to(device)


def _params(b: int, device: str = "cpu", **over: torch.Tensor) -> dict[str, torch.Tensor]:
    p = {
        "flip": torch.zeros(b, dtype=torch.bool),
        "angle": torch.zeros(b),
        "translate": torch.zeros(b, 2),
        "brightness": torch.ones(b),
        "contrast": torch.ones(b),
        "saturation": torch.ones(b),
    }
    p.update(over)
    return {k: v.to(device) for k, v in p.items()}


def test_to_float_range():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = to_float(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_resize_normalize_matches_manual_normalize():
    x = _images(2, 16, 16)
    out = resize_normalize(x, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(out, (x.float() / 255 - mean) / std, atol=1e-5)
    assert resize_normalize(x, 24).shape == (2, 3, 24, 24)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [32, 64, 224, 16])
def test_zero_strength_equals_plain_resize(size, device):
    x = _images(3, device=device)
    out = augment_batch(x, size, AugmentSpec())
    ref = resize_normalize(x, size)
    assert out.shape == ref.shape == (3, 3, size, size)
    assert (out - ref).abs().max().item() < 1e-4


def test_zero_strength_goes_through_grid_sample(monkeypatch):
    import lab.data.augment as aug

    calls = []
    real = aug.F.grid_sample

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(aug.F, "grid_sample", spy)
    augment_batch(_images(2), 32, AugmentSpec())
    assert calls == [1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [32, 64])
def test_hflip_mirrors(size, device):
    x = _images(3, device=device)
    plain = resize_normalize(x, size)
    assert not torch.allclose(plain, torch.flip(plain, dims=[-1]))  # the image is not symmetric
    flipped = augment_batch(x, size, AugmentSpec(hflip=1.0))
    assert (flipped - torch.flip(plain, dims=[-1])).abs().max().item() < 1e-4
    kept = augment_batch(x, size, AugmentSpec(hflip=0.0, brightness=0.0))
    assert (kept - plain).abs().max().item() < 1e-4


def test_hflip_probability_is_per_sample():
    g = torch.Generator().manual_seed(0)
    flips = sample_params(4000, AugmentSpec(hflip=0.3), g, "cpu")["flip"]
    assert 0.25 < flips.float().mean().item() < 0.35


@pytest.mark.parametrize("device", DEVICES)
def test_translation_moves_a_bright_pixel_by_the_sampled_offset(device):
    b = 16
    x = torch.zeros(b, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 10, 20] = 255
    x = x.to(device)
    spec = AugmentSpec(crop_padding=4)
    params = sample_params(b, spec, torch.Generator(device=device).manual_seed(3), device)
    t = params["translate"]
    assert torch.equal(t, t.round()) and t.abs().max() <= 4
    assert len({tuple(r) for r in t.tolist()}) > 1
    out = apply_params(x, 32, spec, params, **RAW)
    for i in range(b):
        dx, dy = (int(v) for v in t[i].tolist())
        expected = torch.zeros(3, 32, 32, device=device)
        expected[:, 10 + dy, 20 + dx] = 1.0
        assert torch.allclose(out[i], expected, atol=1e-5), (i, dx, dy)


def test_translation_direction_and_zero_fill():
    x = torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)
    spec = AugmentSpec(crop_padding=4)
    out = apply_params(x, 32, spec, _params(1, translate=torch.tensor([[3.0, -2.0]])), **RAW)
    v = 200 / 255
    assert torch.all(out[0, :, :, :3] == 0)  # content moved right: zeros enter on the left
    assert torch.all(out[0, :, -2:, :] == 0)  # moved up: zeros at the bottom
    assert torch.allclose(out[0, :, :-2, 3:], torch.full_like(out[0, :, :-2, 3:], v))


def test_translation_scales_with_resize():
    # 2 source pixels at 32 become 4 output pixels at 64.
    x = _images(1)
    spec = AugmentSpec(crop_padding=2)
    shifted = apply_params(x, 64, spec, _params(1, translate=torch.tensor([[2.0, 0.0]])), **RAW)
    plain = resize_normalize(x, 64, **RAW)
    assert torch.allclose(shifted[..., 8:-8], plain[..., 4:-12], atol=1e-5)
    assert torch.all(shifted[..., :3] == 0)  # 2 source px of zero padding, less the blend column
    assert shifted[..., 3].abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_rotation_plus_90_is_counter_clockwise_rot90(device):
    x = _images(2, device=device)
    spec = AugmentSpec(rotation=90)
    out = apply_params(x, 32, spec, _params(2, device, angle=torch.tensor([90.0, -90.0])), **RAW)
    src = to_float(x)
    assert torch.allclose(out[0], torch.rot90(src[0], 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(out[1], torch.rot90(src[1], -1, dims=(-2, -1)), atol=1e-5)
    # Counter-clockwise as displayed: the top-right corner comes from the bottom-right.
    assert torch.allclose(out[0, :, 0, -1], src[0, :, -1, -1], atol=1e-5)


def test_flip_then_rotate_order():
    # Flip then +90 CCW is a transpose; rotate-then-flip would give the anti-transpose.
    x = _images(1)
    p = _params(1, flip=torch.tensor([True]), angle=torch.tensor([90.0]))
    out = apply_params(x, 32, AugmentSpec(hflip=1, rotation=90), p, **RAW)
    assert torch.allclose(out[0], to_float(x)[0].transpose(-2, -1), atol=1e-5)


def test_small_rotation_fills_corners_with_zero():
    x = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    p = _params(1, angle=torch.tensor([45.0]))
    out = apply_params(x, 32, AugmentSpec(rotation=45), p, **RAW)
    assert torch.all(out[0, :, 0, 0] == 0)
    assert torch.allclose(out[0, :, 16, 16], torch.ones(3))


def test_theta_identity_and_translation_units():
    p = _params(2, translate=torch.tensor([[4.0, 0.0], [0.0, -8.0]]))
    theta = build_theta(p, 32, 32)
    assert torch.allclose(theta[:, :, :2], torch.eye(2).expand(2, 2, 2))
    # Output v samples source v - s: 4 px of 32 is 0.25 in normalised units.
    assert torch.allclose(theta[:, :, 2], torch.tensor([[-0.25, 0.0], [0.0, 0.5]]))


@pytest.mark.parametrize("device", DEVICES)
def test_parameters_differ_within_a_batch(device):
    spec = AugmentSpec(
        hflip=0.5, rotation=15, crop_padding=4, brightness=0.2, contrast=0.2, saturation=0.2
    )
    p = sample_params(64, spec, torch.Generator(device=device).manual_seed(0), device)
    assert 0 < p["flip"].sum().item() < 64
    for key in ("angle", "brightness", "contrast", "saturation"):
        assert p[key].shape == (64,)
        assert torch.unique(p[key]).numel() > 32, key
    assert torch.unique(p["translate"][:, 0]).numel() == 9  # all of -4..4 show up in 64 draws
    assert torch.unique(p["translate"], dim=0).shape[0] > 20
    assert p["angle"].abs().max() <= 15
    assert p["brightness"].min() >= 0.8 and p["brightness"].max() <= 1.2


def test_same_generator_seed_same_batch_and_different_seed_differs():
    spec = AugmentSpec(hflip=0.5, rotation=10, crop_padding=4, brightness=0.3)
    x = _images(8)
    a = augment_batch(x, 32, spec, torch.Generator().manual_seed(5))
    b = augment_batch(x, 32, spec, torch.Generator().manual_seed(5))
    c = augment_batch(x, 32, spec, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_brightness_factor_range_clips_at_zero():
    p = sample_params(500, AugmentSpec(brightness=1.5), torch.Generator().manual_seed(0), "cpu")
    assert p["brightness"].min() >= 0 and p["brightness"].max() <= 2.5


def test_brightness_scales_pixels_by_sampled_factor():
    x = torch.randint(0, 100, (16, 3, 32, 32), dtype=torch.uint8)  # dark: no clamp at 1.4x
    spec = AugmentSpec(brightness=0.4)
    p = sample_params(16, spec, torch.Generator().manual_seed(1), "cpu")
    out = apply_params(x, 32, spec, p, **RAW)
    expected = to_float(x) * p["brightness"].view(-1, 1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.unique(p["brightness"]).numel() == 16
    # augment_batch with the same generator state gives the same thing.
    again = augment_batch(x, 32, spec, torch.Generator().manual_seed(1), **RAW)
    assert torch.allclose(again, out)


def test_brightness_clamps_to_one():
    x = torch.full((1, 3, 8, 8), 200, dtype=torch.uint8)
    out = apply_params(
        x, 8, AugmentSpec(brightness=1), _params(1, brightness=torch.tensor([2.0])), **RAW
    )
    assert torch.allclose(out, torch.ones_like(out))


def test_saturation_zero_gives_grey_and_one_keeps_colour():
    x = _images(2)
    spec = AugmentSpec(saturation=1.0)
    out = apply_params(x, 32, spec, _params(2, saturation=torch.tensor([0.0, 1.0])), **RAW)
    assert torch.allclose(out[0, 0], out[0, 1], atol=1e-6)
    assert torch.allclose(out[0, 1], out[0, 2], atol=1e-6)
    assert torch.allclose(out[1], to_float(x)[1], atol=1e-6)
    f = to_float(x)[0]
    gray = 0.2989 * f[0] + 0.587 * f[1] + 0.114 * f[2]
    assert torch.allclose(out[0, 0], gray, atol=1e-5)


def test_contrast_zero_gives_flat_mean_grey():
    x = _images(1)
    out = apply_params(
        x, 32, AugmentSpec(contrast=1), _params(1, contrast=torch.tensor([0.0])), **RAW
    )
    assert torch.allclose(out, out.flatten()[0].expand_as(out), atol=1e-6)


def test_output_is_normalized_with_given_stats():
    x = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
    out = augment_batch(x, 8, AugmentSpec(hflip=1.0))
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[0, :, 4, 4], expected, atol=1e-5)
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hflip": 1.5},
        {"hflip": -0.1},
        {"rotation": -1},
        {"crop_padding": -2},
        {"crop_padding": 2.5},
        {"brightness": -0.1},
        {"contrast": float("nan")},
        {"saturation": float("inf")},
        {"rotation": "10"},
    ],
)
def test_spec_validation(kwargs):
    with pytest.raises(ConfigError):
        AugmentSpec(**kwargs)


def test_spec_is_identity():
    assert AugmentSpec().is_identity
    assert not AugmentSpec(hflip=0.5).is_identity
    assert not AugmentSpec(saturation=0.1).is_identity


def test_function_argument_validation():
    with pytest.raises(ConfigError):
        augment_batch(torch.zeros(2, 3, 8, 8), 8, AugmentSpec())  # float, not uint8
    with pytest.raises(ConfigError):
        resize_normalize(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), 8)
    with pytest.raises(ConfigError):
        resize_normalize(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 4)


def test_rotation_matches_torchvision_rotate():
    # Same direction and fill as RandomRotation (bilinear here, so compare with bilinear).
    tf = pytest.importorskip("torchvision.transforms.functional")
    x = _images(2)
    p = _params(2, angle=torch.tensor([17.0, -33.0]))
    out = apply_params(x, 32, AugmentSpec(rotation=40), p, **RAW)
    src = to_float(x)
    for i, angle in enumerate((17.0, -33.0)):
        ref = tf.rotate(src[i], angle, interpolation=tf.InterpolationMode.BILINEAR)
        assert (out[i] - ref).abs().max().item() < 1e-4


def test_crop_then_resize_matches_pad_crop_interpolate():
    # RandomCrop(32, padding=4) followed by a bilinear resize to 224, done the slow way.
    x = _images(2)
    dx, dy = 3, -2
    padded = torch.nn.functional.pad(to_float(x), (4, 4, 4, 4))
    crop = padded[..., 4 - dy : 36 - dy, 4 - dx : 36 - dx]
    ref = torch.nn.functional.interpolate(crop, size=224, mode="bilinear", align_corners=False)
    p = _params(2, translate=torch.tensor([[dx, dy], [dx, dy]], dtype=torch.float32))
    out = apply_params(x, 224, AugmentSpec(crop_padding=4), p, **RAW)
    assert (out - ref).abs().max().item() < 1e-4
