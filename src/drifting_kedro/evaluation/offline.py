"""Offline metrics on held-out episodes: masked MSE per dataset and dim, MMD, multimodality, λ_V."""

import numpy as np
import pandas as pd
import torch

from drifting_kedro.drifting import compute_drift
from drifting_kedro.evaluation.metrics import gmm_entropy, masked_mse_per_dim, mmd_rbf
from drifting_kedro.model import DriftingPolicy
from drifting_kedro.training.data import PolicySamples, collate_samples, policy_inputs


@torch.no_grad()
def offline_metrics(
    model: DriftingPolicy,
    samples: PolicySamples,
    *,
    generations: int,
    max_samples: int,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Draw G chunks per held-out observation and compare them with the expert's chunk.

    Returns:
        Metrics keyed `<dataset>/<metric>` (normalized units) and a per-dim MSE table
        (dataset, dim, mse) for the error plots.
    """
    model.eval()
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    chosen = np.sort(rng.choice(len(samples), size=min(max_samples, len(samples)), replace=False))
    draws, experts, dataset_ids = [], [], []
    for start in range(0, len(chosen), batch_size):
        batch = collate_samples([samples[int(i)] for i in chosen[start : start + batch_size]])
        cond = policy_inputs(batch, torch.ones(len(batch["actions"])))
        draws.append(model.generate(cond, generations, generator).numpy())  # [B, G, T, 128]
        experts.append(batch["actions"].numpy())  # [B, T, 128]
        dataset_ids.append(batch["dataset_id"].numpy())
    draws, experts, dataset_ids = map(np.concatenate, (draws, experts, dataset_ids))

    metrics, per_dim = {}, []
    for d, name in enumerate(samples.dataset_names):
        selected = dataset_ids == d
        if not selected.any():
            continue
        mask = samples.action_masks[d].numpy().astype(bool)
        mse = masked_mse_per_dim(draws[selected].mean(axis=1), experts[selected], mask)
        per_dim.append(
            pd.DataFrame({"dataset": name, "dim": np.flatnonzero(mask), "mse": mse[mask]})
        )
        active_draws = draws[selected][..., mask]  # [n, G, T, A]
        active_experts = experts[selected][..., mask]  # [n, T, A]
        flat_draws = active_draws[:, 0].reshape(len(active_draws), -1)
        field, stats = compute_drift(
            torch.from_numpy(active_draws.reshape(*active_draws.shape[:2], -1)),
            torch.from_numpy(active_experts.reshape(len(active_experts), 1, -1)),
        )
        del field
        metrics.update(
            {
                f"{name}/mse": float(np.nanmean(mse[mask])),
                f"{name}/mmd2": mmd_rbf(
                    flat_draws, active_experts.reshape(len(active_experts), -1)
                ),
                f"{name}/gmm_entropy": float(
                    np.mean(
                        [
                            gmm_entropy(group.reshape(generations, -1), seed=seed)
                            for group in active_draws
                        ]
                    )
                ),
                f"{name}/lambda_v": float(stats["lambda_v"]),
            }
        )
    return metrics, pd.concat(per_dim, ignore_index=True)
