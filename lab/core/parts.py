"""The parts of a training run: model, optimizer, schedule, scaler, loss, and the wrapped module
that actually trains (DDP and/or torch.compile, sharing the model's parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lab.config import RunConfig
from lab.core.collectives import Dist
from lab.core.models import build_model
from lab.core.optim import make_optimizer, make_scheduler


@dataclass
class Parts:
    device: torch.device
    autocast_dtype: torch.dtype | None
    model: nn.Module  # the plain module: checkpoints, Grad-CAM
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    loss_fn: nn.Module
    log_every: int
    net: nn.Module  # what trains: `model`, or its DDP / compiled wrapper
    eval_net: nn.Module  # what evaluates: DDP's forward syncs buffers, so not DDP

    def wrap(self, config: RunConfig, dist: Dist) -> None:
        """DDP across ranks, then torch.compile: after any restore, since DDP broadcasts rank
        0's weights when it is built."""
        net: nn.Module = self.model
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(self.model, device_ids=[self.device.index]
                                          if self.device.type == "cuda" else None)
        self.net = torch.compile(net) if config.compile else net
        self.eval_net = self.model if dist.active else self.net


def build_parts(config: RunConfig, num_classes: int, steps_per_epoch: int,
                device: torch.device, autocast_dtype: torch.dtype | None, dist: Dist) -> Parts:
    """Everything on `device`, unwrapped (`net` is the model until `wrap`)."""
    model = build_model(config, num_classes)
    if dist.rank:  # the same initial weights (DDP copies rank 0's), other dropout draws
        torch.manual_seed((config.seed * 7919 + dist.rank) % 2**64)  # torch takes < 2**64
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and dist.active:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer, steps_per_epoch)
    use_scaler = autocast_dtype == torch.float16 and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return Parts(device, autocast_dtype, model, optimizer, scheduler, scaler, loss_fn,
                 config.log_every, net=model, eval_net=model)
