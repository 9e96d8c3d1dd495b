"""clip_to_data_range keeps actions inside the demonstrations' range on active dims only."""

import numpy as np

from drifting_kedro.action_space import UNIFIED_DIM
from drifting_kedro.evaluation.policy import clip_to_data_range
from drifting_kedro.normalization import DimStats


def _stats(mask: np.ndarray, low: float, high: float) -> DimStats:
    zeros = np.zeros(UNIFIED_DIM)
    return DimStats(
        mask=mask,
        mean=zeros,
        std=np.ones(UNIFIED_DIM),
        min=np.where(mask, low, 0.0),
        max=np.where(mask, high, 0.0),
        q01=zeros,
        q99=zeros,
    )


def test_active_dims_are_clamped_to_the_data_range_and_inactive_dims_untouched():
    mask = np.zeros(UNIFIED_DIM, bool)
    mask[[16, 23]] = True  # a joint and a gripper
    unified = np.zeros((3, UNIFIED_DIM))  # [T, 128]
    unified[:, 16] = [-5.0, 0.5, 5.0]
    unified[:, 23] = [2.0, -2.0, 0.0]
    unified[:, 100] = [9.0, -9.0, 3.0]  # padding: stats are 0 there, must not clamp to 0
    clipped = clip_to_data_range(unified, _stats(mask, -1.0, 1.0))
    np.testing.assert_array_equal(clipped[:, 16], [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(clipped[:, 23], [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(clipped[:, 100], unified[:, 100])
    np.testing.assert_array_equal(clipped[:, ~mask][:, :5], unified[:, ~mask][:, :5])
