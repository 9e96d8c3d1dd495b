"""Proprio augmentation: noise on the input state of the datasets that ask for it, not on labels."""

import pytest
import torch

from drifting_kedro.training.data import perturb_state, state_noise_scales


def batch_of(dataset_ids: list[int], present_dims: int = 3) -> dict:
    count = len(dataset_ids)
    mask = torch.zeros(count, 8)
    mask[:, :present_dims] = 1
    return {
        "state": torch.ones(count, 8),
        "state_mask": mask,
        "actions": torch.zeros(count, 4, 8),
        "dataset_id": torch.tensor(dataset_ids),
    }


def test_noise_has_each_datasets_std_on_present_dims_and_leaves_labels_alone():
    batch = batch_of([0] * 4000 + [1] * 4000)
    names = ["aloha_sim_transfer_cube", "fetch_pick_and_place_abs"]
    scales = state_noise_scales(names, {"fetch_pick_and_place_abs": 0.3})
    noisy = perturb_state(batch, scales, torch.Generator().manual_seed(0))

    delta = noisy["state"] - batch["state"]
    assert torch.equal(delta[:4000], torch.zeros(4000, 8))  # aloha: no noise asked
    fetch = delta[4000:]
    assert fetch[:, :3].std().item() == pytest.approx(0.3, rel=0.03)
    assert fetch[:, :3].mean().abs().item() < 0.01
    assert torch.equal(fetch[:, 3:], torch.zeros(4000, 5))  # absent dims stay untouched
    assert noisy["actions"] is batch["actions"]
    assert torch.equal(batch["state"], torch.ones(8000, 8))  # the input batch is not modified


def test_noise_is_drawn_from_the_steps_generator():
    batch, scales = batch_of([0] * 16), torch.tensor([0.5])
    first = perturb_state(batch, scales, torch.Generator().manual_seed(7))["state"]
    again = perturb_state(batch, scales, torch.Generator().manual_seed(7))["state"]
    other = perturb_state(batch, scales, torch.Generator().manual_seed(8))["state"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_an_unregistered_dataset_is_named_and_an_absent_one_ignored():
    with pytest.raises(ValueError, match=r"train.state_noise names \['fetch_pusj'\], not regi"):
        state_noise_scales(["aloha_sim_transfer_cube"], {"fetch_pusj": 0.3})
    scales = state_noise_scales(["aloha_sim_transfer_cube"], {"fetch_push": 0.3})
    assert scales.tolist() == [0.0]
