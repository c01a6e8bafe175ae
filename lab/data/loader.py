"""A data loader that never leaves the training device.

CIFAR-10 is 150 MB as uint8, so the whole set lives on the GPU and a batch is one
``index_select`` plus a batched augmentation: no worker processes, no PIL, no host-to-device
copy per step. Order and augmentation of an epoch come from a generator seeded by
(seed, epoch) alone, so a run resumed at epoch e sees exactly the batches it would have seen.
"""

from __future__ import annotations

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
        images: Tensor,
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
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else images
            raise ConfigError(f"images must be a uint8 (N,3,H,W) tensor, got {got}")
        if images.shape[1] != 3:
            raise ConfigError(f"images must have 3 channels in dim 1, got {tuple(images.shape)}")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
            got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else labels
            raise ConfigError(f"labels must be a 1-D integer tensor, got {got}")
        if labels.shape[0] != images.shape[0]:
            raise ConfigError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if labels.device != images.device:
            raise ConfigError(f"images on {images.device} but labels on {labels.device}")
        if images.shape[0] == 0:
            raise ConfigError("the data set is empty")
        if augment is not None and not isinstance(augment, AugmentSpec):
            raise ConfigError(f"augment must be an AugmentSpec or None, got {augment!r}")
        self.batch_size = _positive_int("batch_size", batch_size, 1)
        self.image_size = _positive_int("image_size", image_size, 8)
        self.seed = _positive_int("seed", seed, 0)
        self.stream = _positive_int("stream", stream, 0)
        self.images = images
        self.labels = labels.long()
        self.augment = augment
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.channels_last = bool(channels_last)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        _stat_tensors(self.mean, self.std, images.device)  # validates now, warms the cache
        self.epoch = 0
        self.start_batch = 0

    @classmethod
    def from_numpy(
        cls, x_nhwc: np.ndarray, y: np.ndarray, device: torch.device | str, **kwargs: Any
    ) -> DeviceLoader:
        """Move an (N,H,W,3) uint8 array to the device once, as the (N,3,H,W) layout torch wants."""
        if not isinstance(x_nhwc, np.ndarray) or x_nhwc.dtype != np.uint8 or x_nhwc.ndim != 4:
            got = f"{x_nhwc.dtype} {x_nhwc.shape}" if isinstance(x_nhwc, np.ndarray) else x_nhwc
            raise ConfigError(f"images must be a uint8 (N,H,W,3) array, got {got}")
        if x_nhwc.shape[-1] != 3:
            raise ConfigError(f"images must be (N,H,W,3) with 3 channels last, got {x_nhwc.shape}")
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
        device = torch.device(device)
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

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

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

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = self._generator()
        n, b = self.num_samples, self.batch_size
        order = torch.randperm(n, generator=g, device=self.device) if self.shuffle else None
        spec = None if self.augment is None or self.augment.is_identity else self.augment
        for i, start in enumerate(range(0, len(self) * b, b)):
            stop = min(start + b, n)
            if i < self.start_batch:  # skipped, but its random draws are made all the same
                if spec is not None:
                    sample_params(stop - start, spec, g, self.device)
                continue
            if order is None:
                x, y = self.images[start:stop], self.labels[start:stop]
            else:
                idx = order[start:stop]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            if spec is not None:
                out = augment_batch(x, self.image_size, spec, g, self.mean, self.std)
            else:
                out = resize_normalize(x, self.image_size, self.mean, self.std)
            if self.channels_last:
                out = out.contiguous(memory_format=torch.channels_last)
            yield out, y
