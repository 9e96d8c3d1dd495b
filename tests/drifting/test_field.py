"""The drifting field pinned against a plain double-loop Alg. 2 and its invariances."""

import math

import numpy as np
import pytest
import torch

from drifting_kedro.drifting import compute_drift


def _alg2_loops(x, y_pos, y_neg, tau, self_mask, *, neg_weight=None):
    """Alg. 2 with Python loops over i, j in float64; targets = [negatives; positives]."""
    x, y_pos, y_neg = (np.asarray(t, dtype=np.float64) for t in (x, y_pos, y_neg))
    targets = np.concatenate([y_neg, y_pos])
    n, m, m_neg = len(x), len(targets), len(y_neg)
    w = np.ones(m) if neg_weight is None else np.concatenate([neg_weight, np.ones(len(y_pos))])
    logits = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            d = math.sqrt(sum((x[i, k] - targets[j, k]) ** 2 for k in range(x.shape[1])))
            if self_mask and j == i:
                d += 1e6
            logits[i, j] = -d / tau + (math.log(w[j]) if w[j] > 0 else -math.inf)
    row = np.exp(logits - logits.max(1, keepdims=True))
    row /= row.sum(1, keepdims=True)
    col_max = np.where(np.isfinite(logits.max(0)), logits.max(0), 0.0)
    col = np.exp(logits - col_max)
    col = col / np.where(col.sum(0) > 0, col.sum(0), 1.0)
    a = np.sqrt(row * col)
    v = np.zeros_like(x)
    for i in range(n):
        a_neg, a_pos = a[i, :m_neg].sum(), a[i, m_neg:].sum()
        for j in range(m):
            if j < m_neg:
                v[i] -= a[i, j] * a_pos * targets[j]
            else:
                v[i] += a[i, j] * a_neg * targets[j]
    return v


def _data(seed=0, n=9, p=6, d=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(p, d, generator=g) + 0.7


@pytest.mark.parametrize("tau", [0.05, 0.3, 2.0])
def test_matches_double_loop_alg2_self_negatives(tau):
    x, y_pos = _data()
    v, _ = compute_drift(x, y_pos, None, [tau], normalize_features=False, normalize_drift=False)
    ref = _alg2_loops(x, y_pos, x, tau, self_mask=True)
    np.testing.assert_allclose(v.numpy(), ref, atol=1e-6, rtol=1e-4)


def test_matches_double_loop_alg2_explicit_and_weighted_negatives():
    x, y_pos = _data(1)
    y_neg = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    v, _ = compute_drift(x, y_pos, y_neg, [0.4], normalize_features=False, normalize_drift=False)
    np.testing.assert_allclose(v.numpy(), _alg2_loops(x, y_pos, y_neg, 0.4, False), atol=1e-6)
    w = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0])
    v, _ = compute_drift(
        x,
        y_pos,
        torch.empty(0, 3),
        [0.4],
        normalize_features=False,
        normalize_drift=False,
        extra_neg=y_neg,
        extra_neg_weight=w,
    )
    ref = _alg2_loops(x, y_pos, y_neg, 0.4, False, neg_weight=w.numpy())
    np.testing.assert_allclose(v.numpy(), ref, atol=1e-6)


def test_equilibrium_and_antisymmetry():
    p, q = _data(3, n=8, p=8)
    v_eq, _ = compute_drift(p, p.clone(), p.clone(), [0.1, 0.5], normalize_drift=False)
    assert v_eq.abs().max() < 1e-6
    x = torch.randn(5, 3)
    v_pq, _ = compute_drift(x, p, q, [0.3], normalize_features=False, normalize_drift=False)
    v_qp, _ = compute_drift(x, q, p, [0.3], normalize_features=False, normalize_drift=False)
    torch.testing.assert_close(v_pq, -v_qp, atol=1e-6, rtol=1e-5)


def test_permutation_equivariance():
    x, y_pos = _data(4)
    v, _ = compute_drift(x, y_pos)
    px, py = torch.randperm(len(x)), torch.randperm(len(y_pos))
    v_perm, _ = compute_drift(x[px], y_pos[py])
    torch.testing.assert_close(v_perm, v[px], atol=1e-5, rtol=1e-4)


def test_feature_normalization_makes_field_scale_invariant():
    x, y_pos = _data(5)
    v, stats = compute_drift(x, y_pos)
    v_big, stats_big = compute_drift(x * 1000.0, y_pos * 1000.0)
    torch.testing.assert_close(v_big, v, atol=1e-4, rtol=1e-4)
    assert stats_big["lambda_v"] == pytest.approx(stats["lambda_v"], rel=1e-4)
    # without it a fixed τ on far-away raw data underflows to V = 0
    v_raw, _ = compute_drift(x * 1000.0, y_pos * 1000.0, normalize_features=False)
    assert v_raw.abs().max() < 1e-6 < v.abs().max()


def test_drift_normalization_gives_unit_rms_per_temperature():
    x, y_pos = _data(6)
    for tau in (0.02, 0.05, 0.2):
        v, stats = compute_drift(x, y_pos, temperatures=[tau])
        assert v.square().mean().item() == pytest.approx(1.0, rel=1e-4)
        assert stats[f"drift_norm_tau{tau:g}"] > 0
    v_raw, stats = compute_drift(x, y_pos, temperatures=[0.2], normalize_drift=False)
    assert v_raw.square().mean().item() == pytest.approx(stats["drift_norm_tau0.2"], rel=1e-4)
    assert stats["lambda_v"] == pytest.approx(v_raw.square().sum(1).mean().item(), rel=1e-4)


def test_mask_zeroes_and_ignores_inactive_dims():
    x, y_pos = _data(7, d=5)
    mask = torch.tensor([True, False, True, True, False])
    v, _ = compute_drift(x, y_pos, mask=mask)
    assert torch.all(v[:, ~mask] == 0)
    x2, y2 = x.clone(), y_pos.clone()
    x2[:, ~mask] = torch.randn(len(x), 2) * 50
    y2[:, ~mask] = 1e3
    v2, _ = compute_drift(x2, y2, mask=mask)
    torch.testing.assert_close(v2, v)
    v_small, _ = compute_drift(x[:, mask], y_pos[:, mask])  # √D uses the 3 active dims
    torch.testing.assert_close(v[:, mask], v_small, atol=1e-5, rtol=1e-4)


def test_no_gradient_through_field_and_float32():
    x, y_pos = _data(8)
    x = x.to(torch.bfloat16).requires_grad_(True)
    v, _ = compute_drift(x, y_pos)
    assert not v.requires_grad and v.dtype == torch.float32


def test_batched_equals_per_group_calls():
    g = torch.Generator().manual_seed(9)
    x, y_pos = torch.randn(4, 6, 5, generator=g), torch.randn(4, 2, 5, generator=g)
    mask = torch.rand(4, 5, generator=g) > 0.3
    mask[:, 0] = True
    unc = torch.randn(4, 3, 5, generator=g)
    w = torch.tensor([[0.0], [0.5], [1.0], [2.0]])
    v, stats = compute_drift(x, y_pos, mask=mask, extra_neg=unc, extra_neg_weight=w)
    lam = []
    for b in range(4):
        v_b, s_b = compute_drift(
            x[b], y_pos[b], mask=mask[b], extra_neg=unc[b], extra_neg_weight=w[b]
        )
        torch.testing.assert_close(v[b], v_b, atol=1e-5, rtol=1e-4)
        lam.append(s_b["lambda_v"])
    assert stats["lambda_v"] == pytest.approx(np.mean(lam), rel=1e-5)


@pytest.mark.parametrize("cache", [0, 1 << 30])
def test_chunked_equals_unchunked(cache):
    g = torch.Generator().manual_seed(10)
    x, y_pos = torch.randn(2, 37, 4, generator=g), torch.randn(2, 11, 4, generator=g)
    unc = torch.randn(5, 4, generator=g)
    kw = {"extra_neg": unc, "extra_neg_weight": torch.tensor([[0.7], [0.0]])}
    v, stats = compute_drift(x, y_pos, **kw)
    v_chunk, stats_chunk = compute_drift(x, y_pos, block_elements=14, max_cache_bytes=cache, **kw)
    torch.testing.assert_close(v_chunk, v, atol=1e-5, rtol=1e-4)
    assert stats_chunk == pytest.approx(stats, rel=1e-5)


def test_extra_negatives_with_zero_weight_equal_none():
    x, y_pos = _data(11)
    unc = torch.randn(4, 3) * 3
    v, stats = compute_drift(x, y_pos)
    v0, stats0 = compute_drift(x, y_pos, extra_neg=unc, extra_neg_weight=0.0)
    torch.testing.assert_close(v0, v)
    assert stats0 == pytest.approx(stats, rel=1e-5)
    v1, _ = compute_drift(x, y_pos, extra_neg=unc, extra_neg_weight=1.0)
    assert (v1 - v).abs().max() > 1e-3


def test_bad_inputs_are_named():
    x, y_pos = _data(12)
    with pytest.raises(ValueError, match="mask"):
        compute_drift(x, y_pos, mask=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="no active dims"):
        compute_drift(x, y_pos, mask=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=">= 2 generations"):
        compute_drift(x[:1], y_pos)
    with pytest.raises(ValueError, match="temperatures"):
        compute_drift(x, y_pos, temperatures=[0.0])


def test_tiny_kernel_entries_zeroed_before_gemm_match_reference():
    """Most kernel entries here are < 1e-30 (zeroed before A @ Y); the field must not move."""
    g = torch.Generator().manual_seed(11)
    x, y_pos = 4 * torch.randn(12, 2, generator=g), 4 * torch.randn(7, 2, generator=g)
    v, _ = compute_drift(x, y_pos, None, [0.05], normalize_features=False, normalize_drift=False)
    ref = _alg2_loops(x, y_pos, x, 0.05, self_mask=True)
    np.testing.assert_allclose(v.numpy(), ref, atol=1e-6, rtol=1e-4)


def test_stacked_temperatures_equal_sum_of_single_temperature_fields():
    """All temperatures share one GEMM per block; that must equal separate per-τ calls."""
    g = torch.Generator().manual_seed(12)
    x, y_pos = torch.randn(2, 29, 3, generator=g), torch.randn(2, 9, 3, generator=g)
    temps = (0.02, 0.05, 0.2)
    kw = {"normalize_drift": False, "block_elements": 40}
    v, stats = compute_drift(x, y_pos, temperatures=temps, **kw)
    singles = [compute_drift(x, y_pos, temperatures=(t,), **kw) for t in temps]
    torch.testing.assert_close(v, sum(s[0] for s in singles), atol=1e-5, rtol=1e-4)
    for t, (_, s) in zip(temps, singles, strict=True):
        key = f"drift_norm_tau{t:g}"
        assert stats[key] == pytest.approx(s[key], rel=1e-5)


@pytest.mark.parametrize("spread", [0.0, 1e-3, 1e-2])
def test_generations_collapsed_far_from_their_positive_are_pulled_straight_to_it(spread):
    """G draws that barely differ (an untrained generator) have a raw field of ~1e-9 at τ=0.2:
    drift normalization must still give it unit RMS, pointing from each draw at the positive."""
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(4, 1, 200, generator=gen)
    x = spread * torch.randn(4, 8, 200, generator=gen)
    v, stats = compute_drift(x, y)
    assert stats["drift_norm_tau0.2"] < 1e-12  # the raw field is tiny ...
    assert v.square().mean(dim=(1, 2)).sqrt() == pytest.approx(1.0, rel=1e-3)  # ... not its step
    cosine = torch.nn.functional.cosine_similarity(v, y - x, dim=-1)
    assert cosine.min() > 0.999


@pytest.mark.parametrize("tau", [0.02, 0.05, 0.2])
@pytest.mark.parametrize("spread", [0.0, 0.05, 0.3])
def test_each_normalized_field_has_unit_rms_even_when_its_squares_underflow(tau, spread):
    """At τ = 0.05 the raw field of these draws is ~1e-25, whose squares are 0 in float32; a
    group whose kernel entries all fall under 1e-30 (zeroed before the GEMM) keeps V = 0."""
    gen = torch.Generator().manual_seed(4)
    y = 3.0 * torch.randn(16, 1, 200, generator=gen)
    x = spread * torch.randn(16, 8, 200, generator=gen)
    v, _ = compute_drift(x, y, temperatures=[tau])
    rms = v.square().mean(dim=(1, 2)).sqrt()
    assert torch.all(((rms - 1.0).abs() < 1e-3) | (rms == 0))
    assert rms.max() > 0 or tau < 0.2
