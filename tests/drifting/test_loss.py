"""Drifting loss modes, CFG weighting, CFG-scale sampler, sample queue and EMA."""

import math

import pytest
import torch
from torch import nn

from drifting_kedro.drifting import (
    SampleQueue,
    cfg_negative_weight,
    create_ema,
    drift_field,
    drifting_loss,
    sample_cfg_alpha,
    update_ema,
)


def _batch(seed=0, b=3, g=6, p=2, d=5):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, g, d, generator=gen).requires_grad_(True)
    return x, torch.randn(b, p, d, generator=gen), gen


def test_loss_gradient_pushes_x_along_v():
    x, y_pos, _ = _batch()
    mask = torch.tensor([True, True, False, True, True])
    loss, stats = drifting_loss(x, y_pos, mask=mask)
    loss.backward()
    field = drift_field(x.detach(), y_pos, None, mask=mask)
    numel = x.shape[0] * x.shape[1] * int(mask.sum())
    step = field.v * field.scale[:, None, None]  # each group's step in data units
    common = field.scale.mean()
    torch.testing.assert_close(x.grad, -2 * step / (common**2 * numel), atol=1e-7, rtol=1e-5)
    expected = step.square().sum().item() / (common.item() ** 2 * numel)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert all(isinstance(v, float) for v in stats.values())
    assert "drift/drift_norm_tau0.02" in stats and "drift/lambda_v" in stats


@pytest.mark.parametrize("mode", ["conditional", "hybrid"])
def test_loss_on_kept_columns_equals_the_full_width_field(mode):
    """Columns no row keeps are dropped before the field: same loss, same gradients."""
    from drifting_kedro.drifting.loss import _masked_mse, _stopgrad_mse

    gen = torch.Generator().manual_seed(3)
    b, g, d = 4, 5, 40
    x = torch.randn(b, g, d, generator=gen).requires_grad_(True)
    y_pos = torch.randn(b, 2, d, generator=gen)
    unc = torch.randn(b, b - 1, d, generator=gen)
    alpha = torch.tensor([1.0, 1.5, 2.0, 3.0])
    mask = torch.zeros(b, d, dtype=torch.bool)
    mask[:2, 0:6] = True  # two embodiments with different, partly overlapping dims
    mask[2:, 4:13] = True
    loss, stats = drifting_loss(
        x, y_pos, mode=mode, mask=mask, y_uncond=unc, cfg_alpha=alpha, mse_weight=2.0
    )
    (grad,) = torch.autograd.grad(loss, x)

    weight = cfg_negative_weight(alpha, g, b - 1)[:, None]
    field = drift_field(x.detach(), y_pos, None, mask=mask, extra_neg=unc, extra_neg_weight=weight)
    full = _stopgrad_mse(x, field.v, field.scale, mask)
    if mode == "hybrid":
        full = full + 2.0 * _masked_mse(x.mean(dim=1), y_pos[:, 0], mask)
    (full_grad,) = torch.autograd.grad(full, x)
    assert loss.item() == pytest.approx(full.item(), rel=1e-5)
    torch.testing.assert_close(grad, full_grad, atol=1e-8, rtol=1e-4)
    assert grad[:, :, 13:].abs().max() == 0
    assert stats["drift/lambda_v"] == pytest.approx(field.stats["lambda_v"], rel=1e-4)


def test_a_group_ten_times_farther_from_its_positive_gets_ten_times_the_gradient():
    """The field is scale-free per group; the step is not: groups weigh as their own scale."""
    x, y_pos, _ = _batch(b=2)
    far_x, far_y = x.detach().clone(), y_pos.clone()
    far_x[1] *= 10.0
    far_y[1] *= 10.0
    far_x.requires_grad_(True)
    drifting_loss(x, y_pos)[0].backward()
    drifting_loss(far_x, far_y)[0].backward()
    ratio = far_x.grad[1].norm() / far_x.grad[0].norm()
    assert ratio / (x.grad[1].norm() / x.grad[0].norm()) == pytest.approx(10.0, rel=1e-3)


def test_one_group_is_the_authors_loss_in_its_own_units():
    x, y_pos, _ = _batch(b=1)
    loss, _ = drifting_loss(x, y_pos)
    field = drift_field(x.detach(), y_pos, None)
    assert loss.item() == pytest.approx(field.v.square().mean().item(), rel=1e-5)


def test_cfg_alpha_one_equals_no_cfg():
    x, y_pos, gen = _batch(1)
    unc = torch.randn(7, 5, generator=gen)
    loss, _ = drifting_loss(x, y_pos)
    loss_cfg, stats = drifting_loss(x, y_pos, y_uncond=unc, cfg_alpha=torch.ones(3))
    assert loss_cfg.item() == pytest.approx(loss.item(), rel=1e-6)
    assert stats["drift/cfg_weight"] == 0.0
    g1 = torch.autograd.grad(loss, x)[0]
    g2 = torch.autograd.grad(drifting_loss(x, y_pos, y_uncond=unc, cfg_alpha=torch.ones(3))[0], x)
    torch.testing.assert_close(g2[0], g1)
    field = drift_field(x.detach(), y_pos, None)
    field_cfg = drift_field(
        x.detach(), y_pos, None, extra_neg=unc, extra_neg_weight=torch.full((3, 1), 0.5)
    )
    assert (field_cfg.v - field.v).abs().max() > 1e-3


def test_cfg_weight_formula():
    w = cfg_negative_weight(torch.tensor([1.0, 2.0, 4.0]), num_generated=8, num_uncond=14)
    torch.testing.assert_close(w, torch.tensor([0.0, 0.5, 1.5]))
    with pytest.raises(ValueError, match=">= 1"):
        cfg_negative_weight(torch.tensor([0.5]), 8, 14)


def test_hybrid_adds_mse_of_mean_prediction():
    x, y_pos, _ = _batch(2)
    drift, _ = drifting_loss(x, y_pos)
    hybrid, stats = drifting_loss(x, y_pos, mode="hybrid", mse_weight=2.0, drift_weight=0.5)
    mse = (x.mean(1) - y_pos[:, 0]).square().mean()
    assert hybrid.item() == pytest.approx(0.5 * drift.item() + 2.0 * mse.item(), rel=1e-5)
    assert stats["drift/mse"] == pytest.approx(mse.item(), rel=1e-5)


def test_queue_mode_pulls_toward_global_queue_and_fills_queues():
    x, y_pos, gen = _batch(3)
    pos_q, neg_q = SampleQueue(16, 5), SampleQueue(64, 5)
    loss, _ = drifting_loss(
        x, y_pos, mode="queue", queue=pos_q, neg_queue=neg_q, queue_samples=4, generator=gen
    )
    assert len(pos_q) == 3 and len(neg_q) == 18 and loss.requires_grad
    drifting_loss(x, y_pos, mode="queue", queue=pos_q, neg_queue=neg_q, queue_samples=4)
    assert len(pos_q) == 6 and len(neg_q) == 36
    with pytest.raises(ValueError, match="queue"):
        drifting_loss(x, y_pos, mode="queue")
    with pytest.raises(ValueError, match="mode"):
        drifting_loss(x, y_pos, mode="global")


def test_sample_queue_is_a_fifo_ring_and_checkpointable():
    q = SampleQueue(4, 2)
    q.push(torch.arange(6.0).view(3, 2))
    q.push(torch.tensor([[10.0, 11.0], [12.0, 13.0]]))
    stored = {tuple(r) for r in q.buffer.tolist()}
    assert len(q) == 4 and stored == {(2.0, 3.0), (4.0, 5.0), (10.0, 11.0), (12.0, 13.0)}
    drawn = q.sample(4, torch.Generator().manual_seed(0))
    assert {tuple(r) for r in drawn.tolist()} == stored  # without replacement
    restored = SampleQueue(4, 2)
    restored.load_state_dict(q.state_dict())
    q.push(torch.ones(1, 2))
    restored.push(torch.ones(1, 2))
    torch.testing.assert_close(restored.buffer, q.buffer)
    with pytest.raises(ValueError, match="queue_size"):
        SampleQueue(5, 2).load_state_dict(q.state_dict())
    with pytest.raises(ValueError, match="cannot sample"):
        q.sample(5)


@pytest.mark.parametrize("power", [0.0, 1.0, 3.0])
def test_cfg_alpha_sampler_follows_power_law(power):
    alpha = sample_cfg_alpha(200_000, 4.0, power, generator=torch.Generator().manual_seed(0))
    assert alpha.min() >= 1.0 and alpha.max() <= 4.0
    # P(α <= 2) from the CDF of α^-k on [1, 4]
    if power == 1.0:
        expected = math.log(2) / math.log(4)
    else:
        e = 1 - power
        expected = (2**e - 1) / (4**e - 1)
    assert (alpha <= 2).float().mean().item() == pytest.approx(expected, abs=5e-3)
    assert torch.all(sample_cfg_alpha(5, 1.0, power) == 1.0)


def test_ema_update_and_checkpoint():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = create_ema(model)
    assert not any(p.requires_grad for p in ema.parameters())
    before = ema[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    update_ema(ema, model, decay=0.9)
    torch.testing.assert_close(ema[0].weight, 0.9 * before + 0.1 * model[0].weight)
    copy = create_ema(model)
    copy.load_state_dict(ema.state_dict())
    torch.testing.assert_close(copy[0].weight, ema[0].weight)
    with pytest.raises(ValueError, match="decay"):
        update_ema(ema, model, decay=1.5)


def test_ema_decay_warms_up_from_the_start_and_caps_at_the_configured_decay():
    from drifting_kedro.drifting import ema_decay_at

    decays = [ema_decay_at(step, 0.999) for step in range(0, 20000, 50)]
    assert decays[0] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(decays, decays[1:], strict=False))
    assert decays[-1] == 0.999
    # After 1,500 steps the untrained initial weights keep a negligible share.
    share = 1.0
    for step in range(1500):
        share *= ema_decay_at(step, 0.999)
    assert share < 1e-3
