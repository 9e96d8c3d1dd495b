"""Diffusion (DDPM/DDIM) and flow-matching heads on the same DiT: losses, samplers, overfitting,
and `sample_chunks`, which draws chunks with whichever head a policy has."""

import pytest
import torch
from policy_helpers import VLM_HIDDEN, action_mask_for, make_cond, perturb_zero_init

from drifting_kedro.model import DiffusionHead, FlowMatchingHead, build_policy, sample_chunks
from drifting_kedro.model.baseline import _betas

HEADS = {"diffusion": DiffusionHead, "flow": FlowMatchingHead}


def _policy(head: str):
    torch.manual_seed(0)
    return build_policy("tiny", vlm_hidden_size=VLM_HIDDEN, head=head)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_loss_is_finite_and_trains_the_network(head: str) -> None:
    model, cond = _policy(head), make_cond(batch=3)
    actions = torch.randn(3, 16, 128) * cond["action_mask"][:, None]
    loss, stats = HEADS[head]().loss(model, actions, cond)
    assert torch.isfinite(loss) and stats["loss"] == pytest.approx(loss.item())
    loss.backward()
    assert model.final_layer.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("num_steps", [1, 4])
def test_sampler_shape_and_inactive_dims(head: str, num_steps: int) -> None:
    model, cond = _policy(head), make_cond(batch=3)
    with torch.no_grad():
        for param in model.final_layer.parameters():  # non-zero predictions
            param.normal_(std=0.05)
    actions = HEADS[head]().sample(model, cond, num_steps, torch.Generator().manual_seed(0))
    assert actions.shape == (3, 16, 128)
    assert torch.isfinite(actions).all()
    assert torch.all(actions[cond["action_mask"][:, None].expand_as(actions) == 0] == 0)


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_samples_approach_an_overfit_target(head: str) -> None:
    model, sampler = _policy(head), HEADS[head]()
    one = make_cond(batch=1, seed=2)
    one["embodiment_id"][:] = 2
    one["action_mask"] = action_mask_for([2])
    ramp = torch.linspace(-1, 1, 16)[:, None] * torch.linspace(0.5, 1.5, 128)[None]  # [T, A]
    target = ramp[None] * one["action_mask"][:, None]  # [1, T, A], 16 active dims
    batch = {k: v.expand(16, *v.shape[1:]) for k, v in one.items()}

    def sample_error() -> torch.Tensor:
        actions = sampler.sample(model, batch, 10, torch.Generator().manual_seed(0))
        return ((actions - target) ** 2).sum(dim=(1, 2)) / (16 * 16)  # [16] per active element

    before = sample_error()
    optimizer = model.configure_optimizers(weight_decay=0.0, lr=3e-3, betas=(0.9, 0.95))
    for _ in range(200):
        loss, _ = sampler.loss(model, target.expand(16, -1, -1), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = sample_error()
    power = (target**2).sum() / (16 * 16)
    assert after.mean() < 0.25 * power
    assert after.mean() < before.mean() / 10


def test_heads_refuse_a_policy_of_another_head() -> None:
    drifting, cond = build_policy("tiny", vlm_hidden_size=VLM_HIDDEN), make_cond(batch=2)
    with pytest.raises(ValueError, match="head='diffusion'"):
        DiffusionHead().sample(drifting, cond, num_steps=4)
    with pytest.raises(ValueError, match="head='flow'"):
        FlowMatchingHead().loss(drifting, torch.zeros(2, 16, 128), cond)
    with pytest.raises(ValueError, match="one-step drifting sampler"):
        _policy("flow").generate(cond, num_samples=2)


def test_bad_head_settings_raise() -> None:
    with pytest.raises(ValueError, match="num_steps must be in \\[1, 100\\]"):
        DiffusionHead().sample(_policy("diffusion"), make_cond(batch=1), num_steps=101)
    with pytest.raises(ValueError, match="beta_schedule='quadratic'"):
        DiffusionHead(beta_schedule="quadratic")
    with pytest.raises(ValueError, match="actions have shape"):
        DiffusionHead().loss(_policy("diffusion"), torch.zeros(2, 8, 128), make_cond(batch=2))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_beta_schedules_go_from_clean_to_noise(schedule: str) -> None:
    alphas_cumprod = torch.cumprod(1 - _betas(schedule, 100), 0)
    assert alphas_cumprod[0] > 0.99
    assert alphas_cumprod[-1] < 1e-3
    assert torch.all(alphas_cumprod[1:] < alphas_cumprod[:-1])


@pytest.mark.parametrize("head", ["drifting", *sorted(HEADS)])
def test_sample_chunks_draws_g_chunks_per_observation_with_any_head(head: str) -> None:
    model, cond = _policy(head), make_cond(batch=3)
    perturb_zero_init(model)  # zero-initialized outputs would make every draw identical
    steps = 1 if head == "drifting" else 3
    chunks = sample_chunks(model, cond, 4, steps, torch.Generator().manual_seed(0))
    assert chunks.shape == (3, 4, 16, 128)
    inactive = cond["action_mask"][:, None, None, :] == 0
    assert (chunks.masked_select(inactive.expand_as(chunks)) == 0).all()
    assert (chunks[:, 0] - chunks[:, 1]).abs().max() > 1e-4  # each draw has its own noise


def test_sample_chunks_refuses_multi_step_drifting() -> None:
    with pytest.raises(ValueError, match="drifting head acts in one step"):
        sample_chunks(_policy("drifting"), make_cond(batch=1), 2, num_steps=10)
