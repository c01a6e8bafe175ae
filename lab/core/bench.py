"""`lab bench`: the engine's training speed beside two references, measured in one process.

- engine: the real training loop (`lab.core.loop.train_epoch`) fed by the on-device loader with the
  level's augmentation, as a run uses it;
- limit: the same model and optimizer on batches prepared beforehand and already in memory, so
  only forward, backward and the update are timed: no data pipeline can beat it;
- study: the seed's pipeline, per-sample torchvision transforms on PIL images in a DataLoader.

All three start from the same weights and see the same number of images, after a warm-up, so the
ratios engine/limit and engine/study are what the data pipeline costs or saves. Beside them, the
engine with its images on the device, in host memory and read from the (memory-mapped) cache
(`data_on`): what a data set too big for the device or for RAM costs per step.
"""

from __future__ import annotations

import copy
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lab.config import RunConfig
from lab.core.collectives import Dist
from lab.core.device import autocast as _autocast
from lab.core.device import resolve_device, resolve_precision
from lab.core.evaluate import evaluate
from lab.core.hooks import Hook, Position
from lab.core.loop import train_epoch
from lab.core.models import build_model
from lab.core.optim import make_optimizer
from lab.core.parts import Parts
from lab.data import load_dataset
from lab.data.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentSpec
from lab.data.loader import DeviceLoader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _spec(config: RunConfig) -> AugmentSpec | None:
    if not config.augment:
        return None
    return AugmentSpec(hflip=config.hflip, rotation=config.rotation,
                       crop_padding=config.crop_padding, brightness=config.brightness,
                       contrast=config.contrast, saturation=config.saturation)


def bench(config: RunConfig, data_dir: Path, steps: int = 30, warmup: int = 3,
          workers: int = 2, references: bool = True, rounds: int = 3,
          modes: bool = True, sampler: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Images per second of the engine, the limit and the study's pipeline, and of the engine
    with its images in each place (`modes`) and with a system sampler running beside it
    (`sampler`: makes an object with start() and stop()); one JSON object."""
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    data = load_dataset(config.dataset, data_dir)
    n = (steps + warmup) * config.batch_size
    reps = -(-n // len(data.train_y))
    x = np.concatenate([data.train_x] * reps)[:n]
    y = np.concatenate([data.train_y] * reps)[:n]
    torch.manual_seed(config.seed)
    base = build_model(config.replace(weights="none"), len(data.classes))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    out: dict[str, Any] = {
        "level": config.level, "model": config.model, "image_size": config.image_size,
        "batch_size": config.batch_size, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
        "channels_last": config.channels_last, "compile": config.compile,
        "augment": config.augment,
        "steps": steps, "threads": torch.get_num_threads(), "dataset": data.name,
    }

    loader = DeviceLoader.from_numpy(x, y, device, batch_size=config.batch_size,
                                     image_size=config.image_size, augment=_spec(config),
                                     shuffle=True, seed=config.seed,
                                     channels_last=config.channels_last)
    batches = list(loader) if references else []  # prepared once; the limit only runs the model
    samples: dict[str, list[float]] = {"engine": [], "limit": [], "study": []}
    placed = _placed_loaders(config, data.train_x, data.train_y, n, device) if modes else {}
    samples |= {f"data_on_{mode}": [] for mode in placed}
    if sampler is not None:
        samples["sampled"] = []
    # Interleaved rounds, median of each: a transient load on the machine hits all three alike.
    for _ in range(rounds):
        for mode, placed_loader in placed.items():
            samples[f"data_on_{mode}"].append(_time_engine(
                _fresh(base, device, config), placed_loader, config, loss_fn, dtype, warmup,
                device))
        samples["engine"].append(_time_engine(_fresh(base, device, config), loader, config,
                                              loss_fn, dtype, warmup, device))
        if sampler is not None:
            running = sampler()
            running.start()
            try:
                samples["sampled"].append(_time_engine(_fresh(base, device, config), loader,
                                                       config, loss_fn, dtype, warmup, device))
            finally:
                running.stop()
        if references:
            samples["limit"].append(_time_prepared(_fresh(base, device, config), batches,
                                                   config, loss_fn, dtype, warmup, device))
            samples["study"].append(_time_study(_fresh(base, device, config), x, y, config,
                                                loss_fn, dtype, warmup, device, workers))
    engine = float(np.median(samples["engine"]))
    out["engine_images_per_s"] = round(engine, 1)
    out["rounds"] = {k: v for k, v in samples.items() if v}
    if references:
        out["limit_images_per_s"] = round(float(np.median(samples["limit"])), 1)
        out["study_images_per_s"] = round(float(np.median(samples["study"])), 1)
        out["study_workers"] = workers
        out["engine_vs_limit"] = round(engine / out["limit_images_per_s"], 3)
        out["engine_vs_study"] = round(engine / out["study_images_per_s"], 3)

    if sampler is not None:
        sampled = float(np.median(samples["sampled"]))
        out["sampled_images_per_s"] = round(sampled, 1)
        out["sampled_vs_engine"] = round(sampled / engine, 3)
    if placed:
        on = {mode: round(float(np.median(samples[f"data_on_{mode}"])), 1) for mode in placed}
        out["data_on_images_per_s"] = on
        out["data_on_vs_device"] = {mode: round(v / on["device"], 3) for mode, v in on.items()}
        out["disk_source"] = "memmap" if isinstance(data.train_x, np.memmap) else "memory"

    model = _fresh(base, device, config)
    eval_loader = DeviceLoader.from_numpy(x, y, device, batch_size=config.eval_batch_size,
                                          image_size=config.image_size,
                                          channels_last=config.channels_last)
    evaluate(model, eval_loader, dtype)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    evaluate(model, eval_loader, dtype)
    _sync(device)
    out["eval_images_per_s"] = round(eval_loader.num_samples / (time.perf_counter() - t0), 1)
    out["epoch_seconds_40k"] = round(40_000 / engine + 5_000 / out["eval_images_per_s"], 1)
    if device.type == "cuda":
        out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _placed_loaders(config: RunConfig, pool: np.ndarray, labels: np.ndarray, n: int,
                    device: torch.device) -> dict[str, DeviceLoader]:
    """The same `n` training images (the set's rows, repeated as needed) as a run holds them
    in each place: `pool` is the cache's memmap, so disk reads the file."""
    rows = np.arange(n) % len(pool)
    return {mode: DeviceLoader.from_part(pool, rows, labels[rows], device, mode,
                                         batch_size=config.batch_size,
                                         image_size=config.image_size, augment=_spec(config),
                                         shuffle=True, seed=config.seed,
                                         channels_last=config.channels_last)
            for mode in ("device", "host", "disk")}


def _fresh(base: nn.Module, device: torch.device, config: RunConfig) -> nn.Module:
    model = copy.deepcopy(base).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _time_engine(model: nn.Module, loader: DeviceLoader, config: RunConfig, loss_fn: nn.Module,
                 dtype: torch.dtype | None, warmup: int, device: torch.device) -> float:
    optimizer = make_optimizer(config, model)
    parts = Parts(device, dtype, model, optimizer, None, None, loss_fn, log_every=10_000,
                  net=model, eval_net=model)
    parts.wrap(config, Dist.single())  # torch.compile when the config asks for it
    clock = _Clock(warmup, device)
    train_epoch(parts, loader, Position(), clock)
    _sync(device)
    return round(clock.images / (time.perf_counter() - clock.t0), 1)


class _Clock(Hook):
    """Starts timing after the warm-up batches and counts the images after it."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.t0, self.images = warmup, device, 0.0, 0

    def on_batch(self, epoch: int, batch: int, batches: int, step: int, images: int) -> None:
        if batch == self.warmup:
            _sync(self.device)
            self.t0 = time.perf_counter()
        elif batch > self.warmup:
            self.images += images


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
          images: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype | None,
          device: torch.device) -> None:
    with _autocast(device, dtype):
        loss = loss_fn(model(images).float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _time_prepared(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                   config: RunConfig, loss_fn: nn.Module, dtype: torch.dtype | None,
                   warmup: int, device: torch.device) -> float:
    model.train()
    optimizer = make_optimizer(config, model)
    images = 0
    for i, (xb, yb) in enumerate(batches):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        _step(model, optimizer, loss_fn, xb, yb, dtype, device)
        if i >= warmup:
            images += len(yb)
    _sync(device)
    return round(images / (time.perf_counter() - t0), 1)


class _PILDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Any) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def study_transform(config: RunConfig, side: int) -> Any:
    """The seed's per-image pipeline: PIL transforms at the stored size `side`, then resize."""
    from torchvision import transforms as T

    steps: list[Any] = []
    if config.augment:
        steps += [T.RandomHorizontalFlip(config.hflip), T.RandomRotation(config.rotation),
                  T.RandomCrop(side, padding=int(config.crop_padding)),
                  T.ColorJitter(config.brightness, config.contrast, config.saturation)]
    steps += [T.Resize(config.image_size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def _time_study(model: nn.Module, x: np.ndarray, y: np.ndarray, config: RunConfig,
                loss_fn: nn.Module, dtype: torch.dtype | None, warmup: int,
                device: torch.device, workers: int) -> float:
    model.train()
    optimizer = make_optimizer(config, model)
    dataset = _PILDataset(x, y, study_transform(config, x.shape[1]))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, num_workers=workers,
        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=False)
    images = 0
    t0 = time.perf_counter()
    for i, (xb, yb) in enumerate(loader):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        xb = xb.to(device, non_blocking=True)
        yb = yb.to(device, non_blocking=True)
        if config.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        _step(model, optimizer, loss_fn, xb, yb, dtype, device)
        if i >= warmup:
            images += len(yb)
    _sync(device)
    return round(images / (time.perf_counter() - t0), 1)
