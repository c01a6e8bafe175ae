"""A run's data, ready on its device: the data set, its seeded split, and one loader per part.

Split off from the loop so that `lab gradcam` (explain) and `lab bench` reach the same split and
the same loaders without the training machinery. With several processes each gets its shard
(see `prepare_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lab.config import RunConfig
from lab.core.collectives import Dist
from lab.data import Dataset, Split, load_dataset, make_split
from lab.data.augment import AugmentSpec
from lab.data.loader import DeviceLoader
from lab.data.mirror import Mirror, decide_mirror
from lab.data.placement import Placement, choose_data_on
from lab.errors import ConfigError, DataError


@dataclass
class Prepared:
    data: Dataset
    split: Split
    train: DeviceLoader
    val: DeviceLoader
    test: DeviceLoader
    test_labels: np.ndarray  # the whole test set's, whichever part this process evaluates
    test_x: np.ndarray  # the whole test set, on the host (for the Grad-CAM gallery)
    notes: list[str]
    augmentation: str  # what was applied, which the data set may have narrowed
    train_images: int  # per epoch, over all processes
    mirror: Mirror | None = None  # the run's one mirror decision; None: no flips at all
    placement: Placement = Placement("device", "")  # where the images wait (all three parts)

    @property
    def tta_flip(self) -> bool:
        """Whether validation and test (both) average each image with its mirror."""
        return self.mirror is not None and self.mirror.tta


def split_data(config: RunConfig, data_dir: Path) -> tuple[Dataset, Split, np.ndarray, np.ndarray]:
    """The data set, its seeded split, and the test images and labels (official or split off)."""
    data = load_dataset(config.dataset, data_dir)
    split = checked_split(config, data)
    if data.test_x is not None:
        return data, split, data.test_x, data.test_y
    return data, split, data.train_x[split.test], data.train_y[split.test]


def official_val(data: Dataset) -> int:
    """How many of the pool's last images are the set's own val/ split (0: none given)."""
    return int(data.manifest.get("official_val") or 0)  # a COUNT: the manifest's shape says so


def checked_split(config: RunConfig, data: Dataset) -> Split:
    """The seeded split, refused when the run could not train on it: a part left empty (for
    each of `nproc` processes: validation and test are dealt in chunks), or a training batch
    of one image where ResNet18's last BatchNorm sees a 1x1 map (image_size <= 32), which
    torch refuses in training mode. The launcher's preflight calls this before a run
    directory exists, so such a config fails with one line and leaves nothing behind."""
    has_test = data.test_x is not None
    split = make_split(data.train_y, has_test, config.train_fraction, config.val_fraction,
                       config.split_seed, official_val=official_val(data))
    world = config.nproc
    parts = {"training": len(split.train), "validation": len(split.val),
             "test": len(data.test_y) if has_test else len(split.test)}
    if any(n < (1 if part == "training" else world) for part, n in parts.items()):
        counts = ", ".join(f"{n} {part}" for part, n in parts.items())
        each = f" (for each of {world} processes)" if world > 1 else ""
        raise DataError(f"data set {data.name!r} is too small to split ({len(data.train_y)} "
                        f"images give {counts}; every part needs an image{each})",
                        hint="add images, or change train_fraction / val_fraction")
    per = config.batch_size // world
    shard = -(-parts["training"] // world)
    if config.model == "resnet18" and config.image_size <= 32 and 1 in (per, shard % per):
        better = next((b for b in range(max(2, per + 1), per + 1000) if shard % b != 1), per)
        raise ConfigError(
            f"batch_size={config.batch_size} leaves a training batch of one image "
            f"({parts['training']} training images), which ResNet18's BatchNorm cannot train on "
            f"at image_size {config.image_size} (its last feature map is 1x1)",
            hint=f"use --batch-size {better * world} or an --image-size above 32")
    return split


def prepare_data(config: RunConfig, data_dir: Path, device: torch.device,
                 dist: Dist | None = None) -> Prepared:
    """Load the data set, draw the seeded split and put each part on the device once.

    With several processes each holds only its shard: training images dealt round-robin (the
    last few repeated so every shard is as long, as DistributedSampler does), validation and
    test images in contiguous chunks, and a batch of batch_size / processes."""
    dist = dist or Dist.single()
    data, split, test_x, test_y = split_data(config, data_dir)
    mirror = decide_mirror(config, data.manifest)
    notes = [mirror.note] if mirror.note else []
    spec = AugmentSpec(hflip=mirror.hflip, rotation=config.rotation,
                       crop_padding=config.crop_padding, brightness=config.brightness,
                       contrast=config.contrast, saturation=config.saturation)
    train_idx, val_idx, test_idx = split.train, split.val, np.arange(len(test_y))
    if dist.active:
        total = -(-len(train_idx) // dist.world) * dist.world
        if total > len(train_idx):
            notes.append(f"{total - len(train_idx)} training image(s) repeated so the "
                         f"{dist.world} shards are equal")
        train_idx = np.concatenate([train_idx, train_idx[: total - len(train_idx)]])
        train_idx = train_idx[dist.rank::dist.world]
        val_idx = np.array_split(val_idx, dist.world)[dist.rank]
        test_idx = np.array_split(test_idx, dist.world)[dist.rank]
    # the test part as rows of a stored array, so disk mode reads it from the memmap
    test_pool, test_rows = (data.test_x, test_idx) if data.test_x is not None else \
        (data.train_x, split.test[test_idx])
    image_bytes = (len(train_idx) + len(val_idx) + len(test_rows)) * \
        int(np.prod(data.train_x.shape[1:]))
    placement = choose_data_on(config.data_on, image_bytes, device,
                               config.memory_estimate(len(data.classes)))
    common = dict(image_size=config.image_size, channels_last=config.channels_last,
                  data_on=placement.mode)
    train = DeviceLoader.from_part(
        data.train_x, train_idx, data.train_y[train_idx], device,
        batch_size=config.batch_size // dist.world, augment=spec if config.augment else None,
        shuffle=True, seed=config.seed, stream=dist.rank, **common)
    val = DeviceLoader.from_part(data.train_x, val_idx, data.train_y[val_idx], device,
                                 batch_size=config.eval_batch_size, **common)
    test = DeviceLoader.from_part(test_pool, test_rows, test_y[test_idx], device,
                                  batch_size=config.eval_batch_size, **common)
    applied = config.replace(hflip=mirror.hflip).augmentation_summary()
    return Prepared(data, split, train, val, test, np.asarray(test_y), np.asarray(test_x), notes,
                    applied, train.num_samples * dist.world, mirror, placement)
