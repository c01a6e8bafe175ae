"""DeviceLoader: every sample once per epoch, reproducible by (seed, epoch), labels kept aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.data.augment import AugmentSpec, resize_normalize
from lab.data.loader import DeviceLoader, epoch_seed
from lab.errors import ConfigError

RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
N = 300

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA")]),
]


def _indexed_set(n: int = N, size: int = 8, device: str = "cpu"):
    """Image i is flat, with i // 256 in red and i % 256 in green; label i % 10 in blue."""
    idx = torch.arange(n)
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0] = (idx // 256).view(-1, 1, 1).to(torch.uint8)
    images[:, 1] = (idx % 256).view(-1, 1, 1).to(torch.uint8)
    images[:, 2] = (idx % 10).view(-1, 1, 1).to(torch.uint8)
    return images.to(device), (idx % 10).to(device)


def _decode(batch: torch.Tensor) -> torch.Tensor:
    """Sample indices back from a RAW-normalised batch (read at the centre pixel)."""
    c = batch.shape[-1] // 2
    px = torch.round(batch[:, :, c, c] * 255).long()
    return px[:, 0] * 256 + px[:, 1]


def _order(loader: DeviceLoader) -> list[int]:
    return torch.cat([_decode(x) for x, _ in loader]).tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_each_sample_exactly_once_per_epoch(device):
    images, labels = _indexed_set(device=device)
    loader = DeviceLoader(images, labels, 64, 8, shuffle=True, seed=3, **RAW)
    order = _order(loader)
    assert sorted(order) == list(range(N))
    assert order != list(range(N))  # really shuffled
    sizes = [x.shape[0] for x, _ in loader]
    assert sizes == [64, 64, 64, 64, 44]


def test_unshuffled_is_in_order():
    images, labels = _indexed_set()
    assert _order(DeviceLoader(images, labels, 64, 8, **RAW)) == list(range(N))


@pytest.mark.parametrize(
    ("batch", "drop_last", "expected"),
    [
        (64, False, 5),
        (64, True, 4),
        (100, False, 3),
        (100, True, 3),
        (1, True, N),
        (301, True, 0),
        (301, False, 1),
    ],
)
def test_len(batch, drop_last, expected):
    images, labels = _indexed_set()
    loader = DeviceLoader(images, labels, batch, 8, shuffle=True, drop_last=drop_last, **RAW)
    assert len(loader) == expected
    assert sum(1 for _ in loader) == expected
    assert loader.num_samples == N


def test_drop_last_yields_only_full_batches():
    images, labels = _indexed_set()
    loader = DeviceLoader(images, labels, 64, 8, shuffle=True, drop_last=True, **RAW)
    order = _order(loader)
    assert len(order) == 256 and len(set(order)) == 256


def test_same_seed_and_epoch_same_order_across_instances():
    images, labels = _indexed_set()
    a = DeviceLoader(images, labels, 50, 8, shuffle=True, seed=7, **RAW)
    b = DeviceLoader(images, labels, 50, 8, shuffle=True, seed=7, **RAW)
    a.set_epoch(4)
    b.set_epoch(4)
    assert _order(a) == _order(b)
    assert _order(a) == _order(a)  # iterating again does not advance anything


def test_other_epoch_or_seed_gives_another_order():
    images, labels = _indexed_set()
    loader = DeviceLoader(images, labels, 50, 8, shuffle=True, seed=7, **RAW)
    loader.set_epoch(0)
    first = _order(loader)
    loader.set_epoch(1)
    second = _order(loader)
    other = DeviceLoader(images, labels, 50, 8, shuffle=True, seed=8, **RAW)
    assert first != second
    assert sorted(second) == list(range(N))
    assert _order(other) != first
    loader.set_epoch(0)
    assert _order(loader) == first  # a resumed run at epoch 0 sees the same batches


def test_augmented_batches_reproducible_by_seed_and_epoch():
    images = torch.randint(
        0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.arange(40) % 10
    spec = AugmentSpec(
        hflip=0.5, rotation=10, crop_padding=2, brightness=0.2, contrast=0.2, saturation=0.2
    )

    def epoch(seed: int, e: int) -> list[torch.Tensor]:
        loader = DeviceLoader(images, labels, 16, 16, augment=spec, shuffle=True, seed=seed)
        loader.set_epoch(e)
        return [x for x, _ in loader]

    a, b, c = epoch(1, 2), epoch(1, 2), epoch(1, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("augment", [None, AugmentSpec(hflip=0.5, crop_padding=1)])
def test_labels_stay_aligned_with_images(device, augment):
    images, labels = _indexed_set(device=device)
    loader = DeviceLoader(images, labels, 32, 8, augment=augment, shuffle=True, seed=1, **RAW)
    seen = 0
    for x, y in loader:
        assert y.dtype == torch.int64 and y.device == x.device
        assert torch.equal(y, _decode(x) % 10)
        # The blue channel carries the label too, independently of the decoded index.
        c = x.shape[-1] // 2
        assert torch.equal(y, torch.round(x[:, 2, c, c] * 255).long())
        seen += y.numel()
    assert seen == N


def test_output_shape_dtype_and_normalisation():
    images, labels = _indexed_set()
    loader = DeviceLoader(images, labels, 64, 16)
    x, y = next(iter(loader))
    assert x.shape == (64, 3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x, resize_normalize(images[:64], 16))
    assert torch.equal(y, labels[:64])


@pytest.mark.parametrize("augment", [None, AugmentSpec(hflip=1.0)])
def test_channels_last(augment):
    images, labels = _indexed_set()
    plain = DeviceLoader(images, labels, 64, 16, augment=augment)
    cl = DeviceLoader(images, labels, 64, 16, augment=augment, channels_last=True)
    x, _ = next(iter(cl))
    ref, _ = next(iter(plain))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    assert ref.is_contiguous()
    assert torch.equal(x, ref)


def test_from_numpy_transposes_nhwc():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 8, 12, 3), dtype=np.uint8)  # H != W catches a swapped axis
    y = np.arange(10, dtype=np.int32)
    loader = DeviceLoader.from_numpy(x, y, "cpu", batch_size=4, image_size=8)
    assert loader.images.shape == (10, 3, 8, 12)
    assert loader.images.is_contiguous()
    assert loader.images[3, 1, 5, 7].item() == x[3, 5, 7, 1]
    assert torch.equal(loader.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert loader.labels.dtype == torch.int64
    assert loader.labels.tolist() == list(range(10))
    assert loader.batch_size == 4 and loader.image_size == 8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_from_numpy_to_cuda():
    x = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    loader = DeviceLoader.from_numpy(
        x,
        np.arange(10),
        "cuda",
        batch_size=4,
        image_size=8,
        augment=AugmentSpec(hflip=0.5),
        shuffle=True,
    )
    assert loader.images.is_cuda and loader.labels.is_cuda
    assert torch.equal(loader.images.cpu(), torch.from_numpy(x).permute(0, 3, 1, 2))
    xb, yb = next(iter(loader))
    assert xb.is_cuda and yb.is_cuda and xb.shape == (4, 3, 8, 8)


def test_epoch_seed_mixes():
    seeds = {epoch_seed(s, e) for s in range(10) for e in range(10)}
    assert len(seeds) == 100
    assert all(0 <= s < 2**63 for s in seeds)


def _ok_set():
    return torch.zeros(10, 3, 8, 8, dtype=torch.uint8), torch.zeros(10, dtype=torch.int64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"image_size": 4}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"images": torch.zeros(10, 3, 8, 8)}, "uint8"),
        ({"images": torch.zeros(10, 8, 8, 3, dtype=torch.uint8)}, "3 channels"),
        ({"images": torch.zeros(10, 3, 8, dtype=torch.uint8)}, "uint8"),
        ({"labels": torch.zeros(9, dtype=torch.int64)}, "10 images but 9 labels"),
        ({"labels": torch.zeros(10)}, "integer"),
        ({"mean": (0.5, 0.5)}, "mean/std"),
        ({"std": (0.5, 0.0, 0.5)}, "mean/std"),
        ({"augment": {"hflip": 0.5}}, "AugmentSpec"),
    ],
)
def test_validation(change, message):
    images, labels = _ok_set()
    kwargs = {"images": images, "labels": labels, "batch_size": 4, "image_size": 8}
    kwargs.update(change)
    with pytest.raises(ConfigError, match=message) as info:
        DeviceLoader(**kwargs)
    assert "\n" not in str(info.value)


def test_from_numpy_validation():
    y = np.zeros(4, dtype=np.int64)
    with pytest.raises(ConfigError, match="N,H,W,3"):
        DeviceLoader.from_numpy(
            np.zeros((4, 3, 8, 8), np.uint8), y, "cpu", batch_size=2, image_size=8
        )
    with pytest.raises(ConfigError, match="uint8"):
        DeviceLoader.from_numpy(
            np.zeros((4, 8, 8, 3), np.float32), y, "cpu", batch_size=2, image_size=8
        )
    with pytest.raises(ConfigError, match="labels"):
        DeviceLoader.from_numpy(
            np.zeros((4, 8, 8, 3), np.uint8), y.astype(float), "cpu", batch_size=2, image_size=8
        )


def test_set_epoch_validation():
    images, labels = _ok_set()
    loader = DeviceLoader(images, labels, 4, 8)
    with pytest.raises(ConfigError, match="epoch"):
        loader.set_epoch(-1)
