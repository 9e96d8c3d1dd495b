"""Nodes of the action-mapping stage: native vectors → the 128-D unified space."""

import numpy as np
import pandas as pd

from drifting_kedro.action_space import embodiment_id, state_to_unified, to_unified


def map_to_unified(episodes: pd.DataFrame) -> pd.DataFrame:
    """Place each dataset's native actions and states in their regions of the 128-D vector.

    Args:
        episodes: the per-frame episode table from ingest.

    Returns:
        One row per frame with the unified `action` and `state` (128 floats each) and the
        dataset's embodiment id; keys and split carried over.
    """
    parts = []
    for name, group in episodes.groupby("dataset", sort=False):
        actions = to_unified(np.stack(group["action"].to_numpy()), name)
        states = state_to_unified(np.stack(group["state"].to_numpy()), name)
        part = group[["dataset", "episode_index", "frame_index", "frame_row", "split"]].copy()
        part["embodiment_id"] = embodiment_id(name)
        part["action"] = list(actions.astype(np.float32))
        part["state"] = list(states.astype(np.float32))
        parts.append(part)
    return pd.concat(parts).sort_index()
