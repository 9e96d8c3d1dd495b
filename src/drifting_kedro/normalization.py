"""Per-dataset, per-dim normalization statistics of unified actions and states.

Statistics come from each dataset's own rows only: a quaternion dim of rlbench and a joint of
aloha never share a mean, and quantiles are exact (``np.quantile``), never averaged across
sources. The same ``normalize``/``denormalize`` pair serves training (torch, ``[B, T, 128]``)
and inference (numpy), so the model only ever sees normalized values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from drifting_kedro.action_space import UNIFIED_DIM, action_mask, state_mask

MIN_STD = 0.01  # at most 100x amplification (quaternion dims have std ~0.009)
QUANTILES = (0.01, 0.99)
_FIELDS = ("mean", "std", "min", "max", "q01", "q99")

Kind = Literal["action", "state"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass
class DimStats:
    """Statistics of one kind (action or state) of one dataset, each a [128] float64 vector.

    Inactive dims carry mean 0 and std 1 (min/max/quantiles 0), so normalizing leaves them 0.
    """

    mask: np.ndarray  # [128] bool
    mean: np.ndarray
    std: np.ndarray  # clamped to >= MIN_STD on active dims
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray

    def __post_init__(self) -> None:
        self.mask = np.asarray(self.mask, dtype=bool)
        for name in _FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name in ("mask", *_FIELDS):
            shape = getattr(self, name).shape
            if shape != (UNIFIED_DIM,):
                raise ValueError(f"DimStats.{name} must have shape ({UNIFIED_DIM},), got {shape}")
        if np.any(self.std <= 0):
            raise ValueError(f"DimStats.std must be > 0, got min {self.std.min()}")

    def to_dict(self) -> dict[str, list]:
        out: dict[str, list] = {"mask": [bool(v) for v in self.mask]}
        out.update({name: [float(v) for v in getattr(self, name)] for name in _FIELDS})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DimStats:
        return cls(**{name: data[name] for name in ("mask", *_FIELDS)})


@dataclass
class NormStats:
    """Action and state statistics of one dataset."""

    dataset: str
    count: int  # frames the statistics were computed on
    action: DimStats
    state: DimStats

    def kind(self, kind: Kind) -> DimStats:
        if kind not in ("action", "state"):
            raise ValueError(f"kind must be 'action' or 'state', got {kind!r}")
        return self.action if kind == "action" else self.state

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "action": self.action.to_dict(), "state": self.state.to_dict()}

    @classmethod
    def from_dict(cls, dataset: str, data: Mapping[str, Any]) -> NormStats:
        return cls(
            dataset=dataset,
            count=int(data["count"]),
            action=DimStats.from_dict(data["action"]),
            state=DimStats.from_dict(data["state"]),
        )


@dataclass
class DatasetStats(Mapping[str, NormStats]):
    """All datasets' statistics; ``to_dict()`` is JSON-safe for a Kedro JSONDataset."""

    stats: dict[str, NormStats] = field(default_factory=dict)
    min_std: float = MIN_STD

    def __getitem__(self, dataset: str) -> NormStats:
        try:
            return self.stats[dataset]
        except KeyError:
            raise KeyError(
                f"no normalization statistics for dataset {dataset!r}; have {sorted(self.stats)}"
                " (re-run the normalization pipeline on data that includes it)"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.stats)

    def __len__(self) -> int:
        return len(self.stats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_std": self.min_std,
            "quantiles": list(QUANTILES),
            "datasets": {name: s.to_dict() for name, s in self.stats.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetStats:
        datasets = data["datasets"]
        return cls(
            stats={name: NormStats.from_dict(name, d) for name, d in datasets.items()},
            min_std=float(data.get("min_std", MIN_STD)),
        )


def _dim_stats(values: np.ndarray, mask: np.ndarray, min_std: float) -> DimStats:
    active = values[:, mask].astype(np.float64)  # [n, k]
    out = {name: np.zeros(UNIFIED_DIM) for name in _FIELDS}
    out["std"] = np.ones(UNIFIED_DIM)
    if active.shape[1]:
        out["mean"][mask] = active.mean(axis=0)
        out["std"][mask] = np.maximum(active.std(axis=0), min_std)
        out["min"][mask] = active.min(axis=0)
        out["max"][mask] = active.max(axis=0)
        q01, q99 = np.quantile(active, QUANTILES, axis=0)
        out["q01"][mask] = q01
        out["q99"][mask] = q99
    return DimStats(mask=mask, **out)


def _check_table(name: str, values: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2 or values.shape != (n, UNIFIED_DIM):
        raise ValueError(f"{name} must have shape [{n}, {UNIFIED_DIM}], got {values.shape}")
    return values


def compute_stats(
    unified_actions: np.ndarray,
    unified_states: np.ndarray,
    datasets: np.ndarray | Sequence[str],
    min_std: float = MIN_STD,
) -> DatasetStats:
    """Statistics per dataset over rows ``[N, 128]`` labelled by ``datasets [N]``.

    Only a dataset's active dims (its registry mask) are summarized; a NaN/inf there is an
    error naming the dataset and first bad row, since it would poison every statistic.
    """
    if min_std <= 0:
        raise ValueError(f"min_std must be > 0, got {min_std}")
    datasets = np.asarray(datasets)
    if datasets.ndim != 1:
        raise ValueError(f"datasets must be 1-D [N], got shape {datasets.shape}")
    n = datasets.shape[0]
    actions = _check_table("unified_actions", unified_actions, n)
    states = _check_table("unified_states", unified_states, n)
    out: dict[str, NormStats] = {}
    for name in sorted(set(datasets.tolist())):
        rows = np.flatnonzero(datasets == name)
        per_kind = {}
        for kind, table, mask in (
            ("action", actions, action_mask(name)),
            ("state", states, state_mask(name)),
        ):
            values = table[rows]  # [n_d, 128]
            bad = ~np.isfinite(values[:, mask])
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise ValueError(
                    f"dataset {name!r}: non-finite {kind} in row {rows[row]} "
                    f"(unified dim {np.flatnonzero(mask)[col]}); validate episodes before stats"
                )
            per_kind[kind] = _dim_stats(values, mask, min_std)
        out[name] = NormStats(name, int(rows.size), per_kind["action"], per_kind["state"])
    return DatasetStats(stats=out, min_std=min_std)


def _params(
    x: np.ndarray | torch.Tensor,
    stats: NormStats | DatasetStats,
    kind: Kind,
    datasets: str | Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mean, std, mask shaped to broadcast against x ``[..., 128]``."""
    if x.shape[-1] != UNIFIED_DIM:
        raise ValueError(f"expected [..., {UNIFIED_DIM}] input, got shape {tuple(x.shape)}")
    if isinstance(stats, NormStats):
        s = stats.kind(kind)
        return s.mean, s.std, s.mask
    if datasets is None:
        raise ValueError("pass datasets= (a name, or one per leading row) with DatasetStats")
    if isinstance(datasets, str):
        s = stats[datasets].kind(kind)
        return s.mean, s.std, s.mask
    if len(datasets) != x.shape[0]:
        raise ValueError(f"{len(datasets)} dataset names for a leading dim of {x.shape[0]}")
    per_row = [stats[name].kind(kind) for name in datasets]
    shape = (len(per_row),) + (1,) * (x.ndim - 2) + (UNIFIED_DIM,)  # [B, 1.., 128]
    stack = [np.stack([getattr(s, f) for s in per_row]).reshape(shape) for f in ("mean", "std")]
    mask = np.stack([s.mask for s in per_row]).reshape(shape)
    return stack[0], stack[1], mask


def _apply(x: ArrayT, mean: np.ndarray, std: np.ndarray, mask: np.ndarray, inverse: bool) -> ArrayT:
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        mean_t = torch.as_tensor(mean, dtype=dtype, device=x.device)
        std_t = torch.as_tensor(std, dtype=dtype, device=x.device)
        mask_t = torch.as_tensor(mask, device=x.device)
        y = x * std_t + mean_t if inverse else (x - mean_t) / std_t
        return torch.where(mask_t, y, torch.zeros((), dtype=y.dtype, device=y.device))
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    mean_a, std_a = mean.astype(dtype), std.astype(dtype)
    y = x * std_a + mean_a if inverse else (x - mean_a) / std_a
    return np.where(mask, y, 0).astype(dtype, copy=False)


def normalize(
    x: ArrayT,
    stats: NormStats | DatasetStats,
    kind: Kind = "action",
    datasets: str | Sequence[str] | None = None,
) -> ArrayT:
    """z-score ``[..., 128]`` unified vectors; inactive dims come out 0.

    With a ``DatasetStats``, ``datasets`` is one name or one name per leading row (mixed
    batches ``[B, T, 128]``). numpy in -> numpy out, torch in -> torch out (same device).
    """
    return _apply(x, *_params(x, stats, kind, datasets), inverse=False)


def denormalize(
    x: ArrayT,
    stats: NormStats | DatasetStats,
    kind: Kind = "action",
    datasets: str | Sequence[str] | None = None,
) -> ArrayT:
    """Inverse of ``normalize`` (up to float rounding); inactive dims come out 0."""
    return _apply(x, *_params(x, stats, kind, datasets), inverse=True)
