"""A data loader whose randomness never leaves the training device.

CIFAR-10 is 150 MB as uint8, so the whole set lives on the GPU and a batch is one
``index_select`` plus a batched augmentation: no worker processes, no PIL, no host-to-device
copy per step. A set too big for the device waits in host memory or in the memory-mapped cache
instead (`lab.data.gather`, chosen by `lab.data.placement`); only the uint8 gather moves, the
order and the augmentation are drawn on the device all the same, so a run computes the same
wherever its images are. Order and augmentation of an epoch come from a generator seeded by
(seed, epoch) alone, so a run resumed at epoch e sees exactly the batches it would have seen.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lab.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentSpec,
    _stat_tensors,
    augment_batch,
    resize_normalize,
    sample_params,
)
from lab.data.gather import Gathered
from lab.errors import ConfigError


def _positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """Well-mixed 63-bit seed for (seed, epoch) and, for a data-parallel rank, its stream;
    nearby tuples must not give related streams."""
    key = [seed, epoch] if stream == 0 else [seed, epoch, stream]
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class DeviceLoader:
    """Batches drawn by index from uint8 tensors already on the training device."""

    def __init__(
        self,
        images: Tensor | Gathered,
        labels: Tensor,
        batch_size: int,
        image_size: int,
        *,
        augment: AugmentSpec | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        stream: int = 0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channels_last: bool = False,
    ) -> None:
        source = images if isinstance(images, Gathered) else None
        if source is None:
            _check_resident(images)
        n, device = (source.num_samples, source.device) if source else \
            (images.shape[0], images.device)
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
            got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else labels
            raise ConfigError(f"labels must be a 1-D integer tensor, got {got}")
        if labels.shape[0] != n:
            raise ConfigError(f"{n} images but {labels.shape[0]} labels")
        if labels.device != device:
            raise ConfigError(f"images on {device} but labels on {labels.device}")
        if n == 0:
            raise ConfigError("the data set is empty")
        if augment is not None and not isinstance(augment, AugmentSpec):
            raise ConfigError(f"augment must be an AugmentSpec or None, got {augment!r}")
        self.batch_size = _positive_int("batch_size", batch_size, 1)
        self.image_size = _positive_int("image_size", image_size, 8)
        self.seed = _positive_int("seed", seed, 0)
        self.stream = _positive_int("stream", stream, 0)
        self.images = images if source is None else None  # on the device, NCHW
        self.source = source
        self._n, self._device = int(n), device
        self.labels = labels.long()
        self.augment = augment
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        _stat_tensors(self.mean, self.std, device)  # validates now, warms the cache
        self.epoch = 0
        self.start_batch = 0

    @classmethod
    def from_numpy(
        cls, x_nhwc: np.ndarray, y: np.ndarray, device: torch.device | str, **kwargs: Any
    ) -> DeviceLoader:
        """Move an (N,H,W,3) uint8 array to the device once, as the (N,3,H,W) layout torch wants."""
        _check_nhwc(x_nhwc)
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
        device = torch.device(device)
        with warnings.catch_warnings():  # a read-only memmap: torch only reads it
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            x = torch.from_numpy(np.ascontiguousarray(x_nhwc))
        labels = torch.from_numpy(y.astype(np.int64, copy=False))
        if device.type == "cuda":
            # Copy NHWC as-is over a pinned buffer, transpose on the GPU where it is nearly free.
            x = x.pin_memory().to(device, non_blocking=True)
            labels = labels.pin_memory().to(device, non_blocking=True)
        else:
            x, labels = x.to(device), labels.to(device)
        images = x.permute(0, 3, 1, 2).contiguous()
        return cls(images, labels, **kwargs)

    @classmethod
    def from_part(cls, pool: np.ndarray, index: np.ndarray | None, y: np.ndarray,
                  device: torch.device | str, data_on: str = "device",
                  **kwargs: Any) -> DeviceLoader:
        """A loader over the rows `index` of `pool` (all of it when None) with their labels `y`,
        its images held where `data_on` says: device (copied there once), host (copied into
        host memory once) or disk (read from `pool`, a memmap, batch by batch)."""
        device = torch.device(device)
        if data_on == "device":
            return cls.from_numpy(pool if index is None else pool[index], y, device, **kwargs)
        if data_on not in ("host", "disk"):
            raise ConfigError(f"data_on must be device, host or disk, got {data_on!r}")
        _check_nhwc(pool)
        labels = torch.from_numpy(np.asarray(y).astype(np.int64, copy=False)).to(device)
        index = None if index is None else np.asarray(index, dtype=np.int64)
        source = Gathered.in_host_memory(pool, index, device) if data_on == "host" \
            else Gathered(pool, index, device, "disk")
        return cls(source, labels, **kwargs)

    @property
    def data_on(self) -> str:
        """Where the images wait for their batch: device, host or disk."""
        return "device" if self.source is None else self.source.mode

    @property
    def num_samples(self) -> int:
        return self._n

    @property
    def device(self) -> torch.device:
        return self._device

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Pick the epoch whose order and augmentation the next iteration reproduces, and the
        batch it starts at (a run stopped mid-epoch resumes there, drawing the same batches)."""
        self.epoch = _positive_int("epoch", epoch, 0)
        self.start_batch = _positive_int("start_batch", start_batch, 0)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(epoch_seed(self.seed, self.epoch, self.stream))
        return g

    def _resident(self, spans: list[tuple[int, int]], order: Tensor | None) -> Iterator[Tensor]:
        assert self.images is not None
        for start, stop in spans:
            yield self.images[start:stop] if order is None else \
                self.images.index_select(0, order[start:stop])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = self._generator()
        n, b = self.num_samples, self.batch_size
        order = torch.randperm(n, generator=g, device=self.device) if self.shuffle else None
        spec = None if self.augment is None or self.augment.is_identity else self.augment
        spans = [(start, min(start + b, n)) for start in range(0, len(self) * b, b)]
        for start, stop in spans[: self.start_batch]:  # skipped, but their draws are made
            if spec is not None:
                sample_params(stop - start, spec, g, self.device)
        kept = spans[self.start_batch:]
        images = self._resident(kept, order) if self.source is None else \
            self.source.batches(kept, order)
        try:
            for x, (start, stop) in zip(images, kept, strict=True):
                y = self.labels[start:stop] if order is None else \
                    self.labels.index_select(0, order[start:stop])
                if spec is not None:
                    out = augment_batch(x, self.image_size, spec, g, self.mean, self.std)
                else:
                    out = resize_normalize(x, self.image_size, self.mean, self.std)
                if self.channels_last:
                    out = out.contiguous(memory_format=torch.channels_last)
                yield out, y
        finally:
            images.close()  # a prefetch thread stops now, not when this frame is collected


def _check_resident(images: object) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else images
        raise ConfigError(f"images must be a uint8 (N,3,H,W) tensor, got {got}")
    if images.shape[1] != 3:
        raise ConfigError(f"images must have 3 channels in dim 1, got {tuple(images.shape)}")


def _check_nhwc(x_nhwc: object) -> None:
    if not isinstance(x_nhwc, np.ndarray) or x_nhwc.dtype != np.uint8 or x_nhwc.ndim != 4:
        got = f"{x_nhwc.dtype} {x_nhwc.shape}" if isinstance(x_nhwc, np.ndarray) else x_nhwc
        raise ConfigError(f"images must be a uint8 (N,H,W,3) array, got {got}")
    if x_nhwc.shape[-1] != 3:
        raise ConfigError(f"images must be (N,H,W,3) with 3 channels last, got {x_nhwc.shape}")
