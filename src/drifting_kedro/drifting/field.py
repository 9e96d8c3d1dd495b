"""The drifting field V (Alg. 2 of arXiv 2602.04770), exact and in bounded memory.

Per temperature τ, for queries x and targets Y = [negatives; positives] with logits
L = -d(x, Y)/τ̃ (+ log w for weighted extra negatives):

    A = sqrt(softmax_row(L) * softmax_col(L)) = exp(L - r_i/2 - c_j/2)
    V_τ = rowsum(A_neg) * (A_pos @ y_pos) - rowsum(A_pos) * (A_neg @ y_neg)

with r/c the row/column log-sum-exp. The column softmax couples every query, so the field is
computed in three sweeps over [queries x targets] blocks and never holds more than one block of
the N x M matrix beyond an optional distance cache that must fit ``max_cache_bytes``:

0. distances: the feature scale S, exact row/column minima (the softmax stabilizers),
1. row and column sums of exp(L - stabilizer),
2. A per block, its row sums and A @ Y accumulated per query.

Everything runs in float32 under ``torch.no_grad()`` (bf16/fp16 inputs are upcast): the field is
a stop-gradient target and softmax over distances is too sensitive for half precision.

Exponents are clamped at -87 before ``exp``: e^-87 ≈ 1.6e-38 is float32's smallest normal
number, so this only replaces values float32 cannot represent (CPU ``exp`` takes a ~30x slower
path on underflowing inputs). It is not an affinity floor: every softmax has a term equal to 1,
so the clamp moves sums by < 1e-30 relative, and masked pairs are set to exactly zero.

Before the A @ Y products, kernel entries below 1e-30 are set to exactly zero: A @ Y with entries
near 1e-38 makes denormal products, which x86 multiplies ~4x slower (measured on the 512 x 512
block GEMM). Every A entry is at most 1 and each softmax has a term equal to 1, so this moves
A @ Y and the row sums of A by < M * 1e-30 in absolute terms, far below float32 rounding of any
non-negligible row; it removes mass, so it is not an affinity floor either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

_EXP_MIN = -87.0  # exp(-87) ≈ 1.6e-38, smallest normal float32
_GEMM_MIN = 1e-30  # kernel entries below this are zeroed before A @ Y (no denormal products)
DEFAULT_BLOCK_ELEMENTS = 1 << 18  # 1 MiB float32 blocks: stay in cache between the fused ops
DEFAULT_MAX_CACHE_BYTES = 1 << 30  # keep distances between sweeps when they fit in 1 GiB
# Drift normalization divides V_τ by its RMS, which is scale-free: a group whose G generations
# sit close together far from their positive has a tiny but exact field (RMS ~1e-9 at τ = 0.2,
# far less at smaller τ) pointing at the positive. A floor like 1e-8 would leave such a group
# without gradient (the generator then never leaves the mean); this floor only guards an
# exactly zero field, and fields below it (built from kernel entries under 1e-30) stay small.
DRIFT_RMS_FLOOR = 1e-30


@dataclass
class DriftField:
    """Result of one field computation over B groups (unbatched calls have B = 1)."""

    v: Tensor  # [B, N, D] field in normalized units (drift-normalized if requested)
    scale: Tensor  # [B] feature scale s = S/sqrt(D_active) (1 without feature normalization)
    stats: dict[str, float]


def compute_drift(  # noqa: PLR0917 (the field's public signature)
    x: Tensor,
    y_pos: Tensor,
    y_neg: Tensor | None = None,
    temperatures: Sequence[float] = (0.02, 0.05, 0.2),
    normalize_features: bool = True,
    normalize_drift: bool = True,
    mask: Tensor | None = None,
    *,
    extra_neg: Tensor | None = None,
    extra_neg_weight: Tensor | float | None = None,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
    eps: float = DRIFT_RMS_FLOOR,
) -> tuple[Tensor, dict[str, float]]:
    """Drifting field V for generated samples x; returns (V, stats).

    Unbatched: x [N, D], y_pos [P, D], y_neg [M, D], mask [D], extra_neg [K, D].
    Batched (one field per group, no loop over B): x [B, G, D], y_pos [B, P, D],
    y_neg [B, M, D], mask [D] or [B, D], extra_neg [B, K, D] or shared [K, D].

    ``y_neg=None`` uses x itself as negatives with self-pairs masked out. ``extra_neg`` are
    further negatives whose kernel is weighted by ``extra_neg_weight`` (scalar, [K], [B, 1] or
    [B, K]; CFG's unconditional samples), also in the feature scale S. With both normalizations
    off this is exactly Alg. 2. ``stats`` holds the raw mean(V_τ²) per τ (``drift_norm_tau<τ>``,
    before drift normalization, in feature-normalized units) and ``lambda_v``, the mean squared
    norm of the summed raw field: the convergence signal, since the loss is ~constant.
    V is in feature-normalized units (the loss adds it to x / s) and zero on inactive dims.
    """
    batched = x.dim() == 3
    field = drift_field(
        x if batched else x.unsqueeze(0),
        _batch(y_pos, batched, "y_pos"),
        None if y_neg is None else _batch(y_neg, batched, "y_neg"),
        temperatures,
        normalize_features=normalize_features,
        normalize_drift=normalize_drift,
        mask=mask,
        extra_neg=extra_neg,
        extra_neg_weight=extra_neg_weight,
        block_elements=block_elements,
        max_cache_bytes=max_cache_bytes,
        eps=eps,
    )
    return (field.v if batched else field.v[0]), field.stats


def _batch(t: Tensor, batched: bool, name: str) -> Tensor:
    expected = 3 if batched else 2
    if t.dim() != expected:
        raise ValueError(f"{name} must have {expected} dims to match x, got shape {tuple(t.shape)}")
    return t if batched else t.unsqueeze(0)


@torch.no_grad()
def drift_field(
    x: Tensor,
    y_pos: Tensor,
    y_neg: Tensor | None,
    temperatures: Sequence[float] = (0.02, 0.05, 0.2),
    *,
    normalize_features: bool = True,
    normalize_drift: bool = True,
    mask: Tensor | None = None,
    extra_neg: Tensor | None = None,
    extra_neg_weight: Tensor | float | None = None,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
    eps: float = DRIFT_RMS_FLOOR,
) -> DriftField:
    """Batched field on x [B, N, D] (see ``compute_drift``), also returning the scale s [B]."""
    temps = _check_temperatures(temperatures)
    if block_elements < 1:
        raise ValueError(f"block_elements must be >= 1, got {block_elements}")
    ops = _prepare(
        x, y_pos, y_neg, mask=mask, extra_neg=extra_neg, extra_neg_weight=extra_neg_weight
    )
    bsz, n, dim = ops.x.shape
    self_mask = ops.y_neg is None
    negatives = [ops.x if self_mask else ops.y_neg] + ([ops.extra] if ops.extra is not None else [])
    n_reg = negatives[0].shape[1]  # negatives with weight 1 (x itself or y_neg)
    n_ext = 0 if ops.extra is None else ops.extra.shape[1]
    targets = torch.cat([*negatives, ops.y_pos], dim=1)  # [B, M, D]
    n_neg = n_reg + n_ext
    # Centering makes |x|²+|y|²-2xy cancel less; V is translation invariant.
    center = targets.mean(dim=1, keepdim=True)
    x, targets = ops.x - center, targets - center
    plan = _Plan(bsz, n, targets.shape[1], dim, block_elements, max_cache_bytes)
    ctx = _Context(
        x, targets, n_reg=n_reg, n_ext=n_ext, weight=ops.weight, self_mask=self_mask, plan=plan
    )

    scale_s = ctx.sweep_distances()  # [B] mean distance S (weighted, self-pairs excluded)
    if normalize_features:
        # Paper Eq. 18-22: samples / (S/sqrt(D)) with τ̃ = τ sqrt(D), i.e. logits -(d/S)/τ.
        ctx.rescale_distances(scale_s)
        s = scale_s / ops.active.sqrt()  # [B]
    else:
        s = torch.ones_like(scale_s)
    # Targets were divided by S; V in units of x / s is then V * S / s = V * sqrt(D).
    unit = (ops.active.sqrt() if normalize_features else s)[None, :, None, None]
    neg_k = [-1.0 / t for t in temps]
    ctx.sweep_sums(neg_k)
    pos_term, neg_term, a_pos, a_neg = ctx.sweep_field(neg_k, n_neg)
    raw = (a_neg[..., None] * pos_term - a_pos[..., None] * neg_term) * unit
    # raw: [T, B, N, D] in normalized units; zero on inactive dims since targets are.
    count = n * ops.active  # [B] active elements per group
    msq = raw.square().sum(dim=(2, 3)) / count  # [T, B]
    stats = {f"drift_norm_tau{t:g}": float(msq[i].mean()) for i, t in enumerate(temps)}
    stats["lambda_v"] = float(raw.sum(dim=0).square().sum(dim=-1).mean())
    stats["feature_scale"] = float(s.mean())
    if normalize_drift:
        raw = raw / _rms(raw, count).clamp_min(eps)[..., None, None]
    return DriftField(v=raw.sum(dim=0), scale=s, stats=stats)


def _rms(raw: Tensor, count: Tensor) -> Tensor:
    """RMS [T, B] of each field raw [T, B, N, D], exact where its squares underflow float32.

    A field of 1e-25 has squares of 1e-50 (zero in float32): dividing by the max first keeps
    its RMS exact, so normalization gives it unit RMS instead of dividing by zero's floor.
    """
    peak = raw.abs().amax(dim=(2, 3))  # [T, B]
    unit = raw / peak.clamp_min(torch.finfo(raw.dtype).tiny)[..., None, None]
    return peak * (unit.square().sum(dim=(2, 3)) / count).sqrt()


def _check_temperatures(temperatures: Sequence[float]) -> list[float]:
    temps = [float(t) for t in temperatures]
    if not temps or any(not (t > 0 and math.isfinite(t)) for t in temps):
        raise ValueError(f"temperatures must be a non-empty list of positive floats, got {temps}")
    return temps


class _Operands(NamedTuple):
    """Validated field inputs: float32, detached, zero on inactive dims."""

    x: Tensor  # [B, N, D] queries
    y_pos: Tensor  # [B, P, D]
    y_neg: Tensor | None  # [B, M, D]; None: x itself with self-pairs masked
    extra: Tensor | None  # [B, K, D] negatives whose kernel is weighted
    weight: Tensor | None  # [B, K] kernel weight of each extra negative
    active: Tensor  # [B] active dims per group


def _prepare(
    x: Tensor,
    y_pos: Tensor,
    y_neg: Tensor | None,
    *,
    mask: Tensor | None,
    extra_neg: Tensor | None,
    extra_neg_weight: Tensor | float | None,
) -> _Operands:
    """Validate shapes; float32, detached, inactive dims zeroed; active-dim counts [B]."""
    _check_samples(x, y_pos, y_neg)
    mask_f = _float_mask(mask, x)  # [B, D]
    extra = weight = None
    if extra_neg is not None:
        extra, weight = _weighted_negatives(extra_neg, extra_neg_weight, x)
    elif extra_neg_weight is not None:
        raise ValueError("extra_neg_weight was given without extra_neg")
    m = mask_f[:, None, :]

    def clean(t: Tensor) -> Tensor:
        return t.detach().to(x.device, torch.float32) * m

    return _Operands(
        x=clean(x),
        y_pos=clean(y_pos),
        y_neg=None if y_neg is None else clean(y_neg),
        extra=None if extra is None else clean(extra),
        weight=weight,
        active=mask_f.sum(dim=1),
    )


def _check_samples(x: Tensor, y_pos: Tensor, y_neg: Tensor | None) -> None:
    """Queries x [B, N, D] and targets of the same groups and width."""
    if x.dim() != 3:
        raise ValueError(f"x must be [B, N, D], got shape {tuple(x.shape)}")
    bsz, n, dim = x.shape
    if y_pos.dim() != 3 or y_pos.shape[0] != bsz or y_pos.shape[2] != dim or y_pos.shape[1] < 1:
        raise ValueError(f"y_pos must be [B={bsz}, P>=1, D={dim}], got {tuple(y_pos.shape)}")
    if y_neg is None and n < 2:
        raise ValueError(
            f"x has {n} sample(s) per group: negatives default to x with self-pairs masked, "
            "which needs >= 2 generations per group (or pass y_neg)"
        )
    if y_neg is not None and (y_neg.dim() != 3 or y_neg.shape[0] != bsz or y_neg.shape[2] != dim):
        raise ValueError(f"y_neg must be [B={bsz}, M, D={dim}], got {tuple(y_neg.shape)}")


def _float_mask(mask: Tensor | None, x: Tensor) -> Tensor:
    """Float mask [B, D] of the active dims of every group (ones without a mask)."""
    bsz, _, dim = x.shape
    if mask is None:
        mask_f = torch.ones(bsz, dim, device=x.device)
    elif mask.dtype != torch.bool or mask.shape not in {(dim,), (bsz, dim)}:
        raise ValueError(
            f"mask must be bool [D={dim}] or [B={bsz}, D], got {mask.dtype} {tuple(mask.shape)}"
        )
    else:
        mask_f = mask.to(x.device, torch.float32).expand(bsz, dim)
    empty = mask_f.sum(dim=1) == 0
    if bool(empty.any()):
        bad = torch.nonzero(empty).flatten().tolist()
        raise ValueError(f"mask has no active dims for group(s) {bad}; drop those groups")
    return mask_f


def _weighted_negatives(
    extra_neg: Tensor, extra_neg_weight: Tensor | float | None, x: Tensor
) -> tuple[Tensor, Tensor]:
    """Extra negatives [B, K, D] (a shared [K, D] is expanded) and their weights [B, K]."""
    bsz, _, dim = x.shape
    if extra_neg.dim() == 2:
        extra_neg = extra_neg.unsqueeze(0).expand(bsz, -1, -1)
    if extra_neg.dim() != 3 or extra_neg.shape[0] != bsz or extra_neg.shape[2] != dim:
        raise ValueError(
            f"extra_neg must be [K, D={dim}] or [B={bsz}, K, D], got {tuple(extra_neg.shape)}"
        )
    k = extra_neg.shape[1]
    w = torch.as_tensor(
        1.0 if extra_neg_weight is None else extra_neg_weight,
        dtype=torch.float32,
        device=x.device,
    ).detach()
    if w.dim() == 1 and w.shape[0] == k:
        w = w.unsqueeze(0)
    if w.dim() > 2 or not _broadcastable(w.shape, (bsz, k)):
        raise ValueError(
            f"extra_neg_weight must be a scalar, [K={k}], [B={bsz}, 1] or [B, K], "
            f"got shape {tuple(w.shape)}"
        )
    w = w.expand(bsz, k)
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("extra_neg_weight must be finite and >= 0 (CFG needs alpha >= 1)")
    return extra_neg, w.contiguous()


def _broadcastable(shape: torch.Size, target: tuple[int, int]) -> bool:
    padded = (1,) * (2 - len(shape)) + tuple(shape)
    return all(a in (1, b) for a, b in zip(padded, target, strict=True))


@dataclass
class _Plan:
    """Block sizes: at most ``block_elements`` of the [B, N, M] matrix per block."""

    bsz: int
    n: int
    m: int
    dim: int
    block_elements: int
    max_cache_bytes: int

    def __post_init__(self) -> None:
        # Square-ish blocks keep both GEMMs (distances, A @ Y) compute-bound.
        side = max(1, math.isqrt(max(1, self.block_elements // self.bsz)))
        self.rows = min(self.n, side)
        self.cols = max(1, min(self.m, self.block_elements // (self.bsz * self.rows)))
        self.cache = self.bsz * self.n * self.m * 4 <= self.max_cache_bytes

    def blocks(self) -> list[tuple[int, int, int, int]]:
        return [
            (i0, min(i0 + self.rows, self.n), j0, min(j0 + self.cols, self.m))
            for i0 in range(0, self.n, self.rows)
            for j0 in range(0, self.m, self.cols)
        ]


class _Context:
    """State shared by the three sweeps over distance blocks."""

    def __init__(
        self,
        x: Tensor,
        targets: Tensor,
        *,
        n_reg: int,
        n_ext: int,
        weight: Tensor | None,
        self_mask: bool,
        plan: _Plan,
    ) -> None:
        self.x, self.targets, self.plan = x, targets, plan
        self.n_reg, self.n_ext, self.self_mask = n_reg, n_ext, self_mask
        bsz = x.shape[0]
        self._augment()
        self.cache: dict[tuple[int, int, int, int], Tensor] = {}
        if weight is not None:
            self.ext_valid = (weight > 0).float()  # [B, K]
            self.ext_bias = torch.where(weight > 0, weight.log(), torch.zeros_like(weight))
            # Row stabilizer for weighted columns: an upper bound of their bias.
            self.ext_bias_max = torch.where(
                weight > 0, self.ext_bias, torch.full_like(weight, -math.inf)
            ).amax(dim=1)  # [B]
        self.weight = weight
        self.row_min_reg = torch.full((bsz, x.shape[1]), math.inf, device=x.device)
        self.row_min_ext = torch.full_like(self.row_min_reg, math.inf)
        self.col_min = torch.full((bsz, targets.shape[1]), math.inf, device=x.device)

    def _augment(self) -> None:
        """Operands [x, |x|², 1] @ [-2y, 1, |y|²]^T: squared distances in one GEMM."""
        x, y = self.x, self.targets
        self.xa = torch.cat([x, x.square().sum(-1, keepdim=True), torch.ones_like(x[..., :1])], -1)
        ya = torch.cat([-2 * y, torch.ones_like(y[..., :1]), y.square().sum(-1, keepdim=True)], -1)
        self.ya_t = ya.transpose(1, 2)  # [B, D+2, M]

    # -- distances -------------------------------------------------------------------------
    def _distances(self, i0: int, i1: int, j0: int, j1: int) -> Tensor:
        """Raw L2 distances [B, rows, cols] via the augmented GEMM (clamped before sqrt)."""
        d = torch.bmm(self.xa[:, i0:i1], self.ya_t[:, :, j0:j1])
        return d.clamp_min_(0.0).sqrt_()

    def _self_slice(self, i0: int, i1: int, j0: int, j1: int) -> tuple[Tensor, Tensor] | None:
        """Block-local (row, col) indices of self-pairs (query i vs. its own negative i)."""
        lo, hi = max(i0, j0), min(i1, j1, self.n_reg)
        if not self.self_mask or lo >= hi:
            return None
        idx = torch.arange(lo, hi, device=self.x.device)
        return idx - i0, idx - j0

    def _ext_cols(self, j0: int, j1: int) -> tuple[slice, slice] | None:
        """(block columns, extra-target index) of the weighted negatives inside [j0, j1)."""
        lo, hi = max(j0, self.n_reg), min(j1, self.n_reg + self.n_ext)
        if self.weight is None or lo >= hi:
            return None
        return slice(lo - j0, hi - j0), slice(lo - self.n_reg, hi - self.n_reg)

    def block(self, key: tuple[int, int, int, int]) -> Tensor:
        """Distances of one block with self-pairs at +inf (cached or recomputed)."""
        if key in self.cache:
            return self.cache[key]
        d = self._distances(*key)
        selfs = self._self_slice(*key)
        if selfs is not None:
            d[:, selfs[0], selfs[1]] = math.inf
        return d

    def sweep_distances(self) -> Tensor:
        """Sweep 0: weighted mean distance S [B] and exact row/column minima."""
        bsz, m = self.col_min.shape
        col_sum = torch.zeros(bsz, m, device=self.x.device)
        for key in self.plan.blocks():
            i0, i1, j0, j1 = key
            d = self._distances(*key)  # [B, r, c]
            selfs = self._self_slice(*key)
            if selfs is not None:
                d[:, selfs[0], selfs[1]] = 0.0  # excluded from S (count fixed below)
            col_sum[:, j0:j1] += d.sum(dim=1)
            if selfs is not None:
                d[:, selfs[0], selfs[1]] = math.inf
            ext = self._ext_cols(j0, j1)
            parts = [d]
            if ext is not None:
                valid = self.ext_valid[:, None, ext[1]] > 0
                d_ext = torch.where(valid, d[:, :, ext[0]], math.inf)
                self.row_min_ext[:, i0:i1] = torch.minimum(
                    self.row_min_ext[:, i0:i1], d_ext.amin(dim=2)
                )
                parts = [d[:, :, : ext[0].start], d[:, :, ext[0].stop :]]
            for part in parts:
                if part.shape[2]:
                    self.row_min_reg[:, i0:i1] = torch.minimum(
                        self.row_min_reg[:, i0:i1], part.amin(dim=2)
                    )
            self.col_min[:, j0:j1] = torch.minimum(self.col_min[:, j0:j1], d.amin(dim=1))
            if self.plan.cache:
                self.cache[key] = d
        weights = torch.ones_like(col_sum)
        if self.weight is not None:
            weights[:, self.n_reg : self.n_reg + self.n_ext] = self.weight
        n = self.x.shape[1]
        pairs = n * weights.sum(dim=1) - (n if self.self_mask else 0)  # [B]
        return ((col_sum * weights).sum(dim=1) / pairs).clamp_min(1e-12)

    def rescale_distances(self, scale_s: Tensor) -> None:
        """Divide all distances (cache, minima and GEMM operands) by the feature scale S [B]."""
        inv = 1.0 / scale_s
        for d in self.cache.values():
            d.mul_(inv[:, None, None])
        self.row_min_reg *= inv[:, None]
        self.row_min_ext *= inv[:, None]
        self.col_min *= inv[:, None]
        self.x = self.x * inv[:, None, None]
        self.targets = self.targets * inv[:, None, None]
        self._augment()

    # -- softmax sums --------------------------------------------------------------------
    def _exp_logits(
        self,
        d: Tensor,
        nk: float,
        shift: Tensor,
        shift2: Tensor | None,
        cols: tuple[int, int],
        *,
        out: Tensor | None = None,
    ) -> Tensor:
        """exp(L + shift + shift2) for one block: L = nk * d (+ log w on weighted columns)."""
        t = torch.add(shift, d, alpha=nk, out=out)  # [B, r, c]
        if shift2 is not None:
            t += shift2
        ext = self._ext_cols(*cols)
        if ext is not None:
            t[:, :, ext[0]] += self.ext_bias[:, None, ext[1]]
        t.clamp_min_(_EXP_MIN).exp_()
        if ext is not None:
            t[:, :, ext[0]] *= self.ext_valid[:, None, ext[1]]
        return t

    def sweep_sums(self, neg_k: list[float]) -> None:
        """Sweep 1: row/column log-sum-exp of the logits per temperature ([T, B, N], [T, B, M])."""
        n_t = len(neg_k)
        nk = torch.tensor(neg_k, device=self.x.device)[:, None, None]
        # Exact maxima of L: -d_min / τ (+ an upper bound of the bias on weighted columns).
        row_max = nk * self.row_min_reg  # [T, B, N]
        if self.weight is not None:
            ext_term = nk * self.row_min_ext + self.ext_bias_max[None, :, None]
            row_max = torch.maximum(row_max, ext_term)
        col_max = nk * self.col_min  # [T, B, M]
        if self.weight is not None:
            sl = slice(self.n_reg, self.n_reg + self.n_ext)
            col_max[..., sl] += self.ext_bias
        row_sum = torch.zeros_like(row_max)
        col_sum = torch.zeros_like(col_max)
        for key in self.plan.blocks():
            i0, i1, j0, j1 = key
            d = self.block(key)
            for t in range(n_t):
                e = self._exp_logits(d, neg_k[t], -row_max[t, :, i0:i1, None], None, (j0, j1))
                row_sum[t, :, i0:i1] += e.sum(dim=2)
                e = self._exp_logits(d, neg_k[t], -col_max[t, :, None, j0:j1], None, (j0, j1))
                col_sum[t, :, j0:j1] += e.sum(dim=1)
        self.row_lse = row_max + row_sum.log()
        # Columns with zero weight or no unmasked query have empty sums; keep them finite.
        self.col_lse = torch.where(col_sum > 0, col_max + col_sum.log(), torch.zeros_like(col_sum))

    # -- field ------------------------------------------------------------------------------
    def sweep_field(self, neg_k: list[float], n_neg: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sweep 2: A per block, accumulating A_pos @ y_pos, A_neg @ y_neg and row sums.

        The T temperatures' kernels of a block are stacked as [B, T*r, c] so each block costs
        one GEMM per target kind instead of one per temperature.
        """
        n_t = len(neg_k)
        bsz, n, dim = self.x.shape
        pos_term = torch.zeros(n_t, bsz, n, dim, device=self.x.device)
        neg_term = torch.zeros_like(pos_term)
        a_pos = torch.zeros(n_t, bsz, n, device=self.x.device)
        a_neg = torch.zeros_like(a_pos)
        half_row, half_col = self.row_lse / 2, self.col_lse / 2  # A = exp(L - r/2 - c/2)
        for key in self.plan.blocks():
            i0, i1, j0, j1 = key
            rows, cols = i1 - i0, j1 - j0
            d = self.block(key)
            selfs = self._self_slice(*key)
            split = min(max(n_neg - j0, 0), cols)  # block columns before this are negatives
            a = torch.empty(bsz, n_t, rows, cols, device=d.device)  # [B, T, r, c]
            for t in range(n_t):
                row, col = -half_row[t, :, i0:i1, None], -half_col[t, :, None, j0:j1]
                self._exp_logits(d, neg_k[t], row, col, (j0, j1), out=a[:, t])
            # Denormal-free GEMM inputs (see module docstring).
            torch.nn.functional.threshold_(a, _GEMM_MIN, 0.0)
            if selfs is not None:
                a[:, :, selfs[0], selfs[1]] = 0.0
            flat = a.view(bsz, n_t * rows, cols)  # [B, T*r, c]
            for lo, hi, acc, term in (
                (0, split, a_neg, neg_term),
                (split, cols, a_pos, pos_term),
            ):
                if hi <= lo:
                    continue
                part = flat[:, :, lo:hi]
                acc[:, :, i0:i1] += part.sum(dim=2).view(bsz, n_t, rows).transpose(0, 1)
                prod = torch.bmm(part, self.targets[:, j0 + lo : j0 + hi])  # [B, T*r, D]
                term[:, :, i0:i1] += prod.view(bsz, n_t, rows, dim).transpose(0, 1)
        return pos_term, neg_term, a_pos, a_neg
