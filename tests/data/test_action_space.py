"""Registry, unified mapping round trips, masks and quaternion normalization."""

import numpy as np
import pytest
import torch

from drifting_kedro import action_space as asp
from drifting_kedro.action_space import (
    REGISTRY,
    DatasetSpec,
    Embodiment,
    UnknownDatasetError,
    action_mask,
    embodiment_id,
    from_unified,
    get_spec,
    normalize_quaternions,
    state_from_unified,
    state_mask,
    state_to_unified,
    to_unified,
)

SEED_DATASETS = [
    "rlbench",
    "dexgraspnet",
    "aloha",
    "droid",
    "bc_z",
    "taco_play",
    "utaustin_mutex",
    "cmu_stretch",
    "nyu_franka",
    "stanford_hydra",
]
SIM_DATASETS = [
    "aloha_sim_transfer_cube",
    "aloha_sim_insertion",
    "fetch_pick_and_place",
    "fetch_push",
    "fetch_pick_and_place_abs",
    "robosuite_lift",
    "robosuite_can",
    "maniskill_pick_cube",
    "maniskill_stack_cube",
]


def test_registry_holds_every_dataset():
    b1k = [f"behavior1k_t{i:04d}" for i in range(50)]
    assert set(REGISTRY) == set(SEED_DATASETS + SIM_DATASETS + b1k)
    assert get_spec("behavior1k_t0049").source_id == "lerobot/behavior1k-task0049"


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(name, dtype):
    rng = np.random.default_rng(0)
    spec = get_spec(name)
    action = rng.normal(size=(3, 5, spec.action_dim)).astype(dtype)
    unified = to_unified(action, name)
    assert unified.shape == (3, 5, 128) and unified.dtype == dtype
    assert np.array_equal(from_unified(unified, name), action)
    assert not unified[..., ~action_mask(name)].any()
    state = rng.normal(size=(4, spec.state_dim)).astype(dtype)
    unified_state = state_to_unified(state, name)
    assert np.array_equal(state_from_unified(unified_state, name), state)
    assert not unified_state[..., ~state_mask(name)].any()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_masks_match_indices(name):
    spec = get_spec(name)
    assert np.flatnonzero(action_mask(name)).tolist() == sorted(spec.action_indices)
    assert np.flatnonzero(state_mask(name)).tolist() == sorted(spec.state_indices)
    assert action_mask(name).dtype == bool and action_mask(name).shape == (128,)


def test_semantic_placement():
    aloha = get_spec("aloha_sim_transfer_cube")
    assert aloha.action_indices[aloha.action_names.index("left_gripper")] == 23
    assert aloha.action_indices[aloha.action_names.index("right_gripper")] == 31
    assert aloha.action_indices[:6] == (16, 17, 18, 19, 20, 21)
    dex = get_spec("dexgraspnet")
    assert dex.action_indices == (*range(7), *range(32, 48))
    stretch = get_spec("cmu_stretch")
    assert stretch.action_indices[stretch.action_names.index("base")] == 55
    fetch = get_spec("fetch_push")
    assert fetch.action_indices == (48, 49, 50, 54) and fetch.state_indices == (0, 1, 2, 7)
    assert get_spec("fetch_pick_and_place_abs").action_indices == (0, 1, 2, 7)
    assert embodiment_id("fetch_pick_and_place") == 4
    assert embodiment_id("fetch_pick_and_place_abs") == 0
    assert embodiment_id("aloha_sim_insertion") == Embodiment.BIMANUAL == 2
    assert get_spec("fetch_pick_and_place").source_id == "FetchPickAndPlace-v4"


def test_unknown_dataset_lists_names_compactly():
    with pytest.raises(UnknownDatasetError) as err:
        get_spec("alhoa")
    message = str(err.value)
    assert "'alhoa'" in message and "aloha_sim_transfer_cube" in message
    assert "behavior1k_t0000..t0049" in message and "behavior1k_t0001" not in message
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(UnknownDatasetError):
        action_mask("alhoa")


def test_wrong_width_names_dataset_expected_and_got():
    with pytest.raises(ValueError, match=r"'aloha'.*expected native action width 14, got 13"):
        to_unified(np.zeros((2, 13)), "aloha")
    with pytest.raises(ValueError, match=r"'fetch_push'.*state width 4, got 5"):
        state_to_unified(np.zeros(5), "fetch_push")
    with pytest.raises(ValueError, match="unified action width 128"):
        from_unified(np.zeros((2, 127)), "aloha")


def test_spec_validation_rejects_bad_entries():
    base = dict(
        name="x",
        source="sim",
        source_id="x",
        action_names=("a", "b"),
        action_indices=(0, 1),
        state_names=(),
        state_indices=(),
        embodiment=Embodiment.GRIPPER_EEF,
        cameras=(),
        fps=10.0,
    )
    DatasetSpec(**base)
    with pytest.raises(ValueError, match="duplicate action indices"):
        DatasetSpec(**{**base, "action_indices": (0, 0)})
    with pytest.raises(ValueError, match="outside the regions of embodiment GRIPPER_EEF"):
        DatasetSpec(**{**base, "action_indices": (0, 9)})
    with pytest.raises(ValueError, match="2 action names but 1 unified indices"):
        DatasetSpec(**{**base, "action_indices": (0,)})
    with pytest.raises(ValueError, match=r"outside 0\.\.127"):
        DatasetSpec(**{**base, "state_names": ("s",), "state_indices": (128,)})
    with pytest.raises(ValueError, match="quat_active"):
        DatasetSpec(**{**base, "quat_active": True})


def test_regions_do_not_overlap():
    assert list(asp.REGIONS) == ["A", "B", "C", "D", "E", "F", "pad"]
    dims = [set(range(r.start, r.stop)) for r in asp.REGIONS.values()]
    assert sum(len(d) for d in dims) == 128 and set().union(*dims) == set(range(128))


def test_pad_is_zero_for_every_dataset():
    pad = np.zeros(128, dtype=bool)
    pad[asp.REGION_PAD] = True
    for name in REGISTRY:
        assert not (action_mask(name) & pad).any() and not (state_mask(name) & pad).any(), name
    b1k = get_spec("behavior1k_t0007")
    assert b1k.action_indices[:7] == tuple(range(56, 63))  # base + torso in region F
    assert set(b1k.action_indices[7:]) == set(range(16, 32))


def test_normalize_quaternions():
    native = np.array([[0.1, 0.2, 0.3, 0.0, 0.0, 2.0, 0.0, 1.0]])
    unified = to_unified(native, "rlbench")
    out = normalize_quaternions(unified, "rlbench")
    assert np.allclose(out[0, 3:7], [0, 0, 1, 0]) and np.array_equal(out[0, :3], unified[0, :3])
    assert out[0, 7] == 1.0 and unified[0, 5] == 2.0  # input untouched
    tensor_out = normalize_quaternions(torch.as_tensor(unified), "rlbench")
    assert torch.allclose(tensor_out, torch.as_tensor(out))
    aloha = to_unified(np.ones((1, 14)), "aloha")
    assert normalize_quaternions(aloha, "aloha") is aloha
