"""Exponential moving average of model weights, as in DiT's train.py."""

from __future__ import annotations

import copy

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP / FSDP-style wrappers (they expose it as ``.module``)."""
    return getattr(model, "module", model)


def requires_grad(model: nn.Module, flag: bool = True) -> None:
    """Set requires_grad on every parameter."""
    for p in model.parameters():
        p.requires_grad = flag


def create_ema(model: nn.Module) -> nn.Module:
    """A frozen copy to average into; checkpoint it with ``ema.state_dict()``."""
    ema = copy.deepcopy(_unwrap(model))
    requires_grad(ema, False)
    return ema.eval()


@torch.no_grad()
def ema_decay_at(step: int, decay: float) -> float:
    """Decay for update `step` (0-based), warmed up as (1 + step) / (10 + step), capped at `decay`.

    A fixed 0.999 from step 0 still holds 0.999^1500 = 22% of the untrained initial weights
    after 1,500 steps; the warm-up lets the EMA follow short runs while long runs reach `decay`.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema_model: nn.Module, model: nn.Module, decay: float = 0.9999) -> None:
    """ema = decay * ema + (1 - decay) * model, parameter by parameter; buffers are copied.

    ``decay = 0`` copies the weights (DiT does this once before training).
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    source = _unwrap(model)
    ema_params = dict(ema_model.named_parameters())
    for name, param in source.named_parameters():
        if name not in ema_params:
            raise ValueError(f"EMA model has no parameter {name!r}; build it with create_ema()")
        target = ema_params[name]
        target.mul_(decay).add_(param.detach().to(target.dtype), alpha=1 - decay)
    ema_buffers = dict(ema_model.named_buffers())
    for name, buf in source.named_buffers():
        if name in ema_buffers:
            ema_buffers[name].copy_(buf)
