"""Small random offline results shared by the panel and summary tests."""

import numpy as np
import pandas as pd
import pytest

from drifting_kedro.evaluation.offline import OfflineDraws

DATASETS = {"aloha_sim_transfer_cube": 4, "fetch_pick_and_place": 3}  # name: active dims


def make_draws(active: int, seed: int, n: int = 12, g: int = 4, t: int = 5) -> OfflineDraws:
    rng = np.random.default_rng(seed)
    experts = rng.normal(size=(n, t, active))
    draws = experts[:, None] + 0.5 * rng.normal(size=(n, g, t, active))
    return OfflineDraws(
        dims=np.arange(active) + 16,
        dim_names=[f"dim_{i}" for i in range(active)],
        draws=draws,
        experts=experts,
        drift=0.1 * (experts[:, None] - draws),
    )


@pytest.fixture(scope="session")
def offline_draws() -> dict[str, OfflineDraws]:
    return {name: make_draws(active, seed) for seed, (name, active) in enumerate(DATASETS.items())}


@pytest.fixture(scope="session")
def per_dim_mse(offline_draws) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "dataset": name,
                    "dim": kept.dims,
                    "name": kept.dim_names,
                    "mse": ((kept.draws.mean(1) - kept.experts) ** 2).mean(axis=(0, 1)),
                }
            )
            for name, kept in offline_draws.items()
        ],
        ignore_index=True,
    )
