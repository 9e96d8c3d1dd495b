"""The Drifting objective: field, loss modes, CFG guidance, sample queue, EMA."""

from drifting_kedro.drifting.ema import create_ema, ema_decay_at, requires_grad, update_ema
from drifting_kedro.drifting.field import DriftField, compute_drift, drift_field
from drifting_kedro.drifting.guidance import cfg_negative_weight, sample_cfg_alpha
from drifting_kedro.drifting.loss import LOSS_MODES, drifting_loss
from drifting_kedro.drifting.queue import SampleQueue

__all__ = [
    "LOSS_MODES",
    "DriftField",
    "SampleQueue",
    "cfg_negative_weight",
    "compute_drift",
    "create_ema",
    "drift_field",
    "drifting_loss",
    "ema_decay_at",
    "requires_grad",
    "sample_cfg_alpha",
    "update_ema",
]
