"""Offline metrics on held-out episodes: masked MSE per dataset and dim, MMD, multimodality, λ_V."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from drifting_kedro.action_space import get_spec
from drifting_kedro.drifting import drift_field
from drifting_kedro.evaluation.metrics import gmm_entropy, masked_mse_per_dim, mmd_rbf
from drifting_kedro.model import DriftingPolicy, sample_chunks
from drifting_kedro.training.data import PolicySamples, collate_samples, policy_inputs


@dataclass
class OfflineDraws:
    """What the offline metrics compared for one dataset, on its active dims (normalized units).

    Kept for the evaluation panels, which show the same draws the metrics scored.
    """

    dims: np.ndarray  # [A] unified dim of each active column
    dim_names: list[str]  # [A] native action name of each active column
    draws: np.ndarray  # [n, G, T, A] generated chunks
    experts: np.ndarray  # [n, T, A] expert chunks
    drift: np.ndarray  # [n, G, T, A] raw drifting field s·V at each draw, in the draws' units

    def __post_init__(self) -> None:
        n, g, t, a = self.draws.shape
        if self.experts.shape != (n, t, a) or self.drift.shape != (n, g, t, a):
            raise ValueError(
                f"OfflineDraws: draws {self.draws.shape} need experts {(n, t, a)} and drift "
                f"{self.draws.shape}, got {self.experts.shape} and {self.drift.shape}"
            )
        if len(self.dims) != a or len(self.dim_names) != a:
            raise ValueError(
                f"OfflineDraws: {a} active dims but {len(self.dims)} dims and "
                f"{len(self.dim_names)} names"
            )


@torch.no_grad()
def offline_metrics(
    model: DriftingPolicy,
    samples: PolicySamples,
    *,
    generations: int,
    max_samples: int,
    num_steps: int = 1,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[dict[str, float], pd.DataFrame, dict[str, OfflineDraws]]:
    """Draw G chunks per held-out observation and compare them with the expert's chunk.

    `num_steps` is the sampler's K for a diffusion / flow baseline (drifting: 1).

    The drifting field is computed per observation as in training (its G draws against its
    expert chunk, the draws as negatives), raw (no drift normalization) so it shrinks as the
    policy converges; λ_V is its mean squared norm.

    Returns:
        Metrics keyed `<dataset>/<metric>` (normalized units), a per-dim MSE table
        (dataset, dim, name, mse) for the error plots, and the draws per dataset for the panels.
    """
    model.eval()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    chosen = np.sort(rng.choice(len(samples), size=min(max_samples, len(samples)), replace=False))
    draws, experts, dataset_ids = _draw_chunks(
        model,
        samples,
        chosen,
        generations=generations,
        num_steps=num_steps,
        generator=generator,
        batch_size=batch_size,
    )
    metrics, per_dim, kept = {}, [], {}
    for d, name in enumerate(samples.dataset_names):
        selected = dataset_ids == d
        if not selected.any():
            continue
        mask = samples.action_masks[d].numpy().astype(bool)
        scores, errors, kept[name] = _score_dataset(
            name, mask, draws[selected], experts[selected], seed=seed
        )
        metrics.update(scores)
        per_dim.append(errors)
    return metrics, pd.concat(per_dim, ignore_index=True), kept


def _draw_chunks(
    model: DriftingPolicy,
    samples: PolicySamples,
    chosen: np.ndarray,
    *,
    generations: int,
    num_steps: int,
    generator: torch.Generator,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """G draws [n, G, T, 128], expert chunks [n, T, 128] and dataset ids [n] of `chosen`."""
    draws, experts, dataset_ids = [], [], []
    for start in range(0, len(chosen), batch_size):
        batch = collate_samples([samples[int(i)] for i in chosen[start : start + batch_size]])
        cond = policy_inputs(batch, torch.ones(len(batch["actions"])))
        chunks = sample_chunks(model, cond, generations, num_steps, generator)  # [B, G, T, 128]
        draws.append(chunks.numpy())
        experts.append(batch["actions"].numpy())  # [B, T, 128]
        dataset_ids.append(batch["dataset_id"].numpy())
    return np.concatenate(draws), np.concatenate(experts), np.concatenate(dataset_ids)


def _score_dataset(
    name: str, mask: np.ndarray, draws: np.ndarray, experts: np.ndarray, *, seed: int
) -> tuple[dict[str, float], pd.DataFrame, OfflineDraws]:
    """Metrics, per-dim MSE rows and kept draws of one dataset's draws [n, G, T, 128]."""
    dims = np.flatnonzero(mask)
    spec = get_spec(name)
    names_by_dim = dict(zip(spec.action_indices, spec.action_names, strict=True))
    dim_names = [names_by_dim[int(i)] for i in dims]
    mse = masked_mse_per_dim(draws.mean(axis=1), experts, mask)
    per_dim = pd.DataFrame({"dataset": name, "dim": dims, "name": dim_names, "mse": mse[mask]})
    active_draws = draws[..., mask]  # [n, G, T, A]
    active_experts = experts[..., mask]  # [n, T, A]
    drift, lambda_v = _raw_drift(active_draws, active_experts)
    kept = OfflineDraws(dims, dim_names, active_draws, active_experts, drift)
    n, generations = active_draws.shape[:2]
    entropies = [gmm_entropy(group.reshape(generations, -1), seed=seed) for group in active_draws]
    metrics = {
        f"{name}/mse": float(np.nanmean(mse[mask])),
        f"{name}/mmd2": mmd_rbf(active_draws[:, 0].reshape(n, -1), active_experts.reshape(n, -1)),
        f"{name}/gmm_entropy": float(np.mean(entropies)),
        f"{name}/lambda_v": lambda_v,
    }
    return metrics, per_dim, kept


def _raw_drift(draws: np.ndarray, experts: np.ndarray) -> tuple[np.ndarray, float]:
    """Raw field s·V at draws [n, G, T, A] (their units) against experts [n, T, A]; λ_V."""
    field = drift_field(
        torch.from_numpy(draws.reshape(*draws.shape[:2], -1)),  # [n, G, T*A]
        torch.from_numpy(experts.reshape(len(experts), 1, -1)),  # [n, 1, T*A]
        None,
        normalize_drift=False,
    )
    # V is in units of draws / s: s·V moves a draw in the draws' own (normalized) units.
    drift = (field.scale[:, None, None] * field.v).numpy().reshape(draws.shape)
    return drift, float(field.stats["lambda_v"])
