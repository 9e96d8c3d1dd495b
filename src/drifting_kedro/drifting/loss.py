"""The drifting loss ‖x̃ - sg(x̃ + V)‖² in three comparable modes.

- ``conditional`` (the default): x [B, G, D] holds G generations per observation; the
  field of each observation uses its own positives y_pos [B, P, D] (ground-truth chunk, P > 1
  adds neighbouring chunks of the same episode) and its own generations as negatives. This is
  what learns the policy p(a | o).
- ``queue`` (a global-queue recipe): every prediction is pulled toward a global queue of recent
  ground-truth chunks of all observations; negatives are the whole batch (or a queue of past
  predictions). The field never sees which observation a sample belongs to, so this learns the
  marginal p(a), not the policy; it is kept to compare against.
- ``hybrid``: mse_weight * MSE(mean over G of x, ground truth) + drift_weight * conditional.

Classifier-free guidance (conditional / hybrid): real chunks of other observations y_uncond
join the negatives with kernel weight w = (α-1)(G-1)/N_unc, α [B] being the generator's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from drifting_kedro.drifting.field import DEFAULT_BLOCK_ELEMENTS, drift_field
from drifting_kedro.drifting.guidance import cfg_negative_weight
from drifting_kedro.drifting.queue import SampleQueue

LOSS_MODES = ("conditional", "queue", "hybrid")


def drifting_loss(
    x: Tensor,
    y_pos: Tensor,
    *,
    mode: str = "conditional",
    mask: Tensor | None = None,
    temperatures: Sequence[float] = (0.02, 0.05, 0.2),
    normalize_features: bool = True,
    normalize_drift: bool = True,
    y_uncond: Tensor | None = None,
    cfg_alpha: Tensor | None = None,
    queue: SampleQueue | None = None,
    neg_queue: SampleQueue | None = None,
    queue_samples: int = 256,
    mse_weight: float = 1.0,
    drift_weight: float = 1.0,
    generator: torch.Generator | None = None,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> tuple[Tensor, dict[str, float]]:
    """Drifting loss of generations x [B, G, D] (requires grad); returns (loss, float stats).

    y_pos [B, P, D]: positives per observation, y_pos[:, 0] being the ground truth (hybrid MSE,
    and what ``queue`` mode pushes). mask: bool [D] or [B, D] of active dims (loss is the mean
    over active elements). y_uncond [B, N_unc, D] or shared [N_unc, D] with cfg_alpha [B]: CFG
    negatives. ``queue`` (positives) and optional ``neg_queue`` (past predictions) are
    required / used by ``mode="queue"``, which pushes into them.
    """
    _check_arguments(
        mode,
        x,
        y_pos,
        mse_weight=mse_weight,
        drift_weight=drift_weight,
        y_uncond=y_uncond,
        cfg_alpha=cfg_alpha,
    )
    field_kw = {
        "temperatures": temperatures,
        "normalize_features": normalize_features,
        "normalize_drift": normalize_drift,
        "block_elements": block_elements,
    }
    if mode == "queue":
        return _queue_loss(
            x,
            y_pos,
            mask=mask,
            queue=queue,
            neg_queue=neg_queue,
            queue_samples=queue_samples,
            generator=generator,
            field_kw=field_kw,
        )
    return _conditional_loss(
        x,
        y_pos,
        mask=mask,
        y_uncond=y_uncond,
        cfg_alpha=cfg_alpha,
        hybrid=mode == "hybrid",
        mse_weight=mse_weight,
        drift_weight=drift_weight,
        field_kw=field_kw,
    )


def _check_arguments(
    mode: str,
    x: Tensor,
    y_pos: Tensor,
    *,
    mse_weight: float,
    drift_weight: float,
    y_uncond: Tensor | None,
    cfg_alpha: Tensor | None,
) -> None:
    """Reject a mode, shapes or weights the loss is not defined for, before any work."""
    if mode not in LOSS_MODES:
        raise ValueError(f"drifting loss mode={mode!r} is not one of {LOSS_MODES}")
    if x.dim() != 3 or y_pos.dim() != 3 or y_pos.shape[0] != x.shape[0]:
        raise ValueError(
            f"drifting_loss expects x [B, G, D] and y_pos [B, P, D], "
            f"got {tuple(x.shape)} and {tuple(y_pos.shape)}"
        )
    if mse_weight < 0 or drift_weight < 0:
        raise ValueError(f"loss weights must be >= 0, got mse={mse_weight}, drift={drift_weight}")
    if y_uncond is not None and cfg_alpha is None:
        raise ValueError("y_uncond (CFG negatives) was given without cfg_alpha [B]")
    if y_uncond is not None and mode == "queue":
        raise ValueError("CFG (y_uncond) is only defined for conditional / hybrid modes")


def _conditional_loss(
    x: Tensor,
    y_pos: Tensor,
    *,
    mask: Tensor | None,
    y_uncond: Tensor | None,
    cfg_alpha: Tensor | None,
    hybrid: bool,
    mse_weight: float,
    drift_weight: float,
    field_kw: dict,
) -> tuple[Tensor, dict[str, float]]:
    """Each observation's generations against its own positives (``hybrid``: plus the MSE)."""
    if mask is not None:
        # Columns no row keeps are zero in every sample and weigh nothing in the loss: dropping
        # them leaves distances, field and loss as they were, at a fraction of the cost (a
        # batch of one-arm and bimanual chunks keeps ~900 of 50 x 128 columns).
        columns = _kept_columns(mask, x.shape[2])
        x, y_pos, mask = x[..., columns], y_pos[..., columns], mask[..., columns]
        y_uncond = None if y_uncond is None else y_uncond[..., columns]
    weight = None if y_uncond is None else _cfg_weight(cfg_alpha, x, y_uncond)
    field = drift_field(
        x, y_pos, None, mask=mask, extra_neg=y_uncond, extra_neg_weight=weight, **field_kw
    )
    loss = drift_weight * _stopgrad_mse(x, field.v, field.scale, mask)
    stats = {f"drift/{k}": v for k, v in field.stats.items()}
    stats["drift/loss"] = float(loss.detach()) / max(drift_weight, 1e-12)
    if hybrid:
        mse = _masked_mse(x.float().mean(dim=1), y_pos[:, 0].float(), mask)
        loss = loss + mse_weight * mse
        stats["drift/mse"] = float(mse.detach())
    if weight is not None:
        stats["drift/cfg_weight"] = float(weight.mean())
    return loss, stats


def _cfg_weight(cfg_alpha: Tensor | None, x: Tensor, y_uncond: Tensor) -> Tensor:
    """Kernel weight [B, 1] of the CFG negatives y_uncond for generations x [B, G, D]."""
    bsz, gens, _ = x.shape
    if cfg_alpha is None or cfg_alpha.shape != (bsz,):
        got = None if cfg_alpha is None else tuple(cfg_alpha.shape)
        raise ValueError(f"cfg_alpha must be [B={bsz}], got {got}")
    return cfg_negative_weight(cfg_alpha.to(x.device), gens, y_uncond.shape[-2])[:, None]


def _kept_columns(mask: Tensor, dim: int) -> Tensor:
    """Indices of the columns that at least one row of mask [D] or [B, D] keeps."""
    if mask.dtype != torch.bool or mask.shape[-1] != dim or mask.dim() not in (1, 2):
        raise ValueError(
            f"mask must be bool [D={dim}] or [B, D], got {mask.dtype} {tuple(mask.shape)}"
        )
    kept = mask if mask.dim() == 1 else mask.any(dim=0)
    return kept.nonzero().flatten().to(mask.device)


def _active(mask: Tensor | None, bsz: int, dim: int, device: torch.device) -> Tensor:
    """Float mask [B, 1, D] (ones without a mask)."""
    if mask is None:
        return torch.ones(bsz, 1, dim, device=device)
    return mask.to(device, torch.float32).expand(bsz, dim)[:, None, :]


def _stopgrad_mse(x: Tensor, v: Tensor, scale: Tensor, mask: Tensor | None) -> Tensor:
    """mean over active elements of (x̃ - sg(x̃ + (s_b / s̄) V))², x̃ = x / s̄ (float32).

    V is unit-RMS in each group's own scale s_b, so a group's step in data units is s_b V: a
    group far from its positive moves further than one already on it, as in regression. Taking
    every group in its own units instead (x / s_b) would weight groups by 1 / s_b, so the
    observations a policy already gets right (a Fetch arm holding still) would drown the ones it
    gets wrong (the reach). s̄, the batch's mean scale, keeps the loss O(1); with one group this
    is exactly the authors' ‖x̃ - sg(x̃ + V)‖².
    """
    common = scale.mean()
    x_tilde = x.float() / common  # [B, G, D]
    target = (x_tilde + v * (scale / common)[:, None, None]).detach()
    m = _active(mask, x.shape[0], x.shape[2], x.device)
    return ((x_tilde - target).square() * m).sum() / (m.sum() * x.shape[1])


def _masked_mse(pred: Tensor, truth: Tensor, mask: Tensor | None) -> Tensor:
    """MSE over active dims of pred / truth [B, D]."""
    m = _active(mask, pred.shape[0], pred.shape[1], pred.device)[:, 0]
    return ((pred - truth).square() * m).sum() / m.sum()


def _queue_loss(
    x: Tensor,
    y_pos: Tensor,
    *,
    mask: Tensor | None,
    queue: SampleQueue | None,
    neg_queue: SampleQueue | None,
    queue_samples: int,
    generator: torch.Generator | None,
    field_kw: dict,
) -> tuple[Tensor, dict[str, float]]:
    """Seeds' recipe: all predictions against global positive (and negative) queues."""
    if queue is None:
        raise ValueError("mode='queue' needs queue=SampleQueue(capacity, D) of positives")
    if queue_samples < 1:
        raise ValueError(f"queue_samples must be >= 1, got {queue_samples}")
    dim = x.shape[2]
    if mask is not None and mask.dim() == 2:
        if not bool((mask == mask[:1]).all()):
            raise ValueError(
                "mode='queue' mixes all observations in one field, so it needs one mask for "
                "the batch (batches of one embodiment); got differing per-row masks"
            )
        mask = mask[0]
    queue.push(y_pos[:, 0])
    flat = x.reshape(1, -1, dim)  # [1, B*G, D]: one global group
    y_q = queue.sample(min(len(queue), queue_samples), generator).to(x.device)[None]
    y_neg = None
    if neg_queue is not None and len(neg_queue) >= queue_samples:
        y_neg = neg_queue.sample(queue_samples, generator).to(x.device)[None]
    field = drift_field(flat, y_q, y_neg, mask=mask, **field_kw)
    loss = _stopgrad_mse(flat, field.v, field.scale, mask)
    if neg_queue is not None:
        neg_queue.push(flat[0])
    stats = {f"drift/{k}": v for k, v in field.stats.items()}
    stats["drift/loss"] = float(loss.detach())
    return loss, stats
