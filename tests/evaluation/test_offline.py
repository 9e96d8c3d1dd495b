"""offline_metrics on a tiny model and feature store: metrics and the draws kept for the panels."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drifting_kedro.action_space import get_spec
from drifting_kedro.evaluation.offline import offline_metrics
from drifting_kedro.model import DriftingPolicy, PolicyConfig
from drifting_kedro.normalization import DatasetStats
from drifting_kedro.training.data import PolicySamples

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from training_set import DATASET, HIDDEN, write_training_set  # noqa: E402

HORIZON, GENERATIONS = 8, 4


def held_out_samples(root: Path) -> PolicySamples:
    paths = write_training_set(root, episodes=2, length=12)
    stats = DatasetStats.from_dict(json.loads(Path(paths["stats"]).read_text()))
    return PolicySamples(
        pd.read_parquet(paths["table"]), stats, {DATASET: paths["features"]}, HORIZON
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    samples = held_out_samples(tmp_path_factory.mktemp("offline"))
    torch.manual_seed(0)
    model = DriftingPolicy(
        PolicyConfig(
            action_horizon=HORIZON,
            hidden_size=32,
            depth=2,
            num_heads=2,
            noise_dim=8,
            vlm_hidden_size=HIDDEN,
        )
    )
    with torch.no_grad():  # zero-initialized output layers would make every draw identical
        for param in model.parameters():
            if not param.any():
                param.copy_(0.05 * torch.randn(param.shape))
    return offline_metrics(model, samples, generations=GENERATIONS, max_samples=10)


def test_metrics_per_dataset_are_finite(result):
    metrics, _, _ = result
    assert set(metrics) == {f"{DATASET}/{m}" for m in ("mse", "mmd2", "gmm_entropy", "lambda_v")}
    assert all(np.isfinite(value) for value in metrics.values())


def test_kept_draws_are_what_the_metrics_scored(result):
    metrics, per_dim, kept = result
    draws = kept[DATASET]
    spec = get_spec(DATASET)
    assert draws.draws.shape == (10, GENERATIONS, HORIZON, spec.action_dim)
    assert draws.experts.shape == (10, HORIZON, spec.action_dim)
    assert list(draws.dims) == sorted(spec.action_indices)
    assert draws.dim_names == [
        dict(zip(spec.action_indices, spec.action_names, strict=True))[d] for d in draws.dims
    ]
    mse = ((draws.draws.mean(axis=1) - draws.experts) ** 2).mean(axis=(0, 1))  # [A]
    np.testing.assert_allclose(per_dim["mse"], mse, rtol=1e-5)
    assert list(per_dim["name"]) == draws.dim_names
    assert metrics[f"{DATASET}/mse"] == pytest.approx(mse.mean(), rel=1e-5)
    assert np.isfinite(draws.drift).all() and np.abs(draws.drift).max() > 0


def test_a_diffusion_baseline_is_scored_with_its_k_step_sampler(tmp_path):
    samples = held_out_samples(tmp_path)
    torch.manual_seed(0)
    config = PolicyConfig(
        action_horizon=HORIZON, hidden_size=32, depth=2, num_heads=2, vlm_hidden_size=HIDDEN
    )
    model = DriftingPolicy(replace(config, head="diffusion", noise_dim=config.action_dim))
    metrics, _, kept = offline_metrics(
        model, samples, generations=GENERATIONS, max_samples=6, num_steps=3
    )
    assert kept[DATASET].draws.shape[:2] == (6, GENERATIONS)
    assert all(np.isfinite(value) for value in metrics.values())
