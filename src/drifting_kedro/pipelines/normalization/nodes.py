"""Nodes of the normalization stage: per-dataset statistics on the training split."""

import numpy as np
import pandas as pd

from drifting_kedro.normalization import compute_stats


def compute_normalization_stats(unified_actions: pd.DataFrame) -> dict:
    """Mean, clamped std, min, max and exact q01/q99 per dataset and active dim (train split).

    Args:
        unified_actions: the unified per-frame table.

    Returns:
        JSON-safe statistics keyed by dataset.
    """
    train = unified_actions[unified_actions["split"] == "train"]
    if train.empty:
        raise ValueError("no training frames: every episode was held out (ingest.val_fraction)")
    return compute_stats(
        np.stack(train["action"].to_numpy()),
        np.stack(train["state"].to_numpy()),
        train["dataset"].to_numpy(),
    ).to_dict()
