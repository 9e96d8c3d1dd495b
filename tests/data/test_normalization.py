"""Per-dataset statistics are exact and never mix sources; normalize/denormalize invert."""

import json

import numpy as np
import pytest
import torch

from drifting_kedro.action_space import state_to_unified, to_unified
from drifting_kedro.normalization import (
    MIN_STD,
    DatasetStats,
    compute_stats,
    denormalize,
    normalize,
)


@pytest.fixture
def table():
    """rlbench (metres, ~1) and aloha (scaled x1000) rows, interleaved."""
    rng = np.random.default_rng(1)
    rl_action = rng.normal(0.5, 0.2, size=(60, 8))
    rl_action[:, 3] = 0.7 + rng.normal(0, 1e-4, size=60)  # near-constant quaternion dim
    al_action = rng.normal(1000.0, 300.0, size=(41, 14))
    actions = np.concatenate([to_unified(rl_action, "rlbench"), to_unified(al_action, "aloha")])
    states = np.concatenate(
        [state_to_unified(rl_action * 2, "rlbench"), state_to_unified(al_action - 5, "aloha")]
    )
    names = np.array(["rlbench"] * 60 + ["aloha"] * 41)
    order = rng.permutation(len(names))
    return actions[order], states[order], names[order], rl_action, al_action


def test_stats_exact_per_dataset(table):
    actions, states, names, rl_action, al_action = table
    stats = compute_stats(actions, states, names)
    assert set(stats) == {"rlbench", "aloha"} and stats["aloha"].count == 41
    al = stats["aloha"].action
    dims = [16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 31]
    np.testing.assert_allclose(al.mean[dims], al_action.mean(axis=0), rtol=1e-12)  # row order
    np.testing.assert_allclose(al.std[dims], al_action.std(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(al.min[dims], al_action.min(axis=0))
    np.testing.assert_array_equal(al.max[dims], al_action.max(axis=0))
    np.testing.assert_array_equal(al.q01[dims], np.quantile(al_action, 0.01, axis=0))
    np.testing.assert_array_equal(al.q99[dims], np.quantile(al_action, 0.99, axis=0))
    rl = stats["rlbench"].action
    np.testing.assert_array_equal(rl.q99[:8], np.quantile(rl_action, 0.99, axis=0))
    np.testing.assert_allclose(
        stats["rlbench"].state.mean[:8], (rl_action * 2).mean(axis=0), rtol=1e-12
    )
    # inactive dims: mean 0, std 1
    assert not rl.mean[8:].any() and np.all(rl.std[8:] == 1.0) and not rl.q99[8:].any()
    assert al.mean[0] == 0 and al.std[0] == 1.0


def test_std_clamped(table):
    actions, states, names, rl_action, _ = table
    rl = compute_stats(actions, states, names)["rlbench"].action
    assert rl_action[:, 3].std() < MIN_STD and rl.std[3] == MIN_STD
    assert rl.std[0] == pytest.approx(rl_action[:, 0].std(), rel=1e-12)


def test_nonfinite_rows_are_named(table):
    actions, states, names, _, _ = table
    actions = actions.copy()
    row = int(np.flatnonzero(names == "aloha")[3])
    actions[row, 31] = np.nan
    with pytest.raises(ValueError, match=rf"'aloha'.*row {row} \(unified dim 31\)"):
        compute_stats(actions, states, names)


def test_json_round_trip(table):
    stats = compute_stats(*table[:3])
    restored = DatasetStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    for name in stats:
        for kind in ("action", "state"):
            a, b = stats[name].kind(kind), restored[name].kind(kind)
            for field in ("mask", "mean", "std", "min", "max", "q01", "q99"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    with pytest.raises(KeyError, match="no normalization statistics for dataset 'droid'"):
        restored["droid"]


def test_normalize_round_trip_numpy(table):
    actions, states, names, _, _ = table
    stats = compute_stats(actions, states, names)
    x = actions[names == "aloha"]  # [41, 128]
    z = normalize(x, stats["aloha"])
    assert abs(z[:, 16].mean()) < 1e-9 and abs(z[:, 16].std() - 1) < 1e-9
    assert not z[:, ~stats["aloha"].action.mask].any()
    np.testing.assert_allclose(denormalize(z, stats, datasets="aloha"), x, rtol=1e-12)
    s = states[names == "rlbench"].astype(np.float32)
    zs = normalize(s, stats, kind="state", datasets="rlbench")
    assert zs.dtype == np.float32
    np.testing.assert_allclose(denormalize(zs, stats["rlbench"], kind="state"), s, rtol=1e-5)


def test_normalize_round_trip_torch_mixed_batch(table):
    actions, states, names, _, _ = table
    stats = compute_stats(actions, states, names)
    batch = ["aloha", "rlbench", "aloha"]
    rows = [np.flatnonzero(names == n)[:5] for n in batch]
    x = torch.as_tensor(np.stack([actions[r] for r in rows]), dtype=torch.float32)  # [3, 5, 128]
    z = normalize(x, stats, datasets=batch)
    assert isinstance(z, torch.Tensor) and z.shape == (3, 5, 128) and z.dtype == torch.float32
    expected = normalize(actions[rows[1]], stats["rlbench"])
    torch.testing.assert_close(z[1], torch.as_tensor(expected, dtype=torch.float32))
    assert not z[1, :, 8:].any() and not z[0, :, :16].any()
    torch.testing.assert_close(denormalize(z, stats, datasets=batch), x, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="2 dataset names for a leading dim of 3"):
        normalize(x, stats, datasets=batch[:2])
    with pytest.raises(ValueError, match="pass datasets="):
        normalize(x, stats)
