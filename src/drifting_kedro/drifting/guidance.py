"""Classifier-free guidance for drifting (paper A.7): CFG-scale sampling and negative weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sample_cfg_alpha(
    n: int,
    alpha_max: float = 4.0,
    power: float = 3.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """CFG scales α [n] ~ p(α) ∝ α^-power on [1, alpha_max] by inverse CDF.

    ``alpha_max = 1`` returns ones (no guidance). ``power = 1`` uses the log form α = α_max^u.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not (alpha_max >= 1.0 and math.isfinite(alpha_max)):
        raise ValueError(f"alpha_max must be a finite value >= 1, got {alpha_max}")
    if not math.isfinite(power):
        raise ValueError(f"power must be finite, got {power}")
    gen_device = generator.device if generator is not None else None
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=gen_device)
    if alpha_max == 1.0:
        alpha = torch.ones_like(u)
    elif abs(power - 1.0) < 1e-12:
        alpha = alpha_max**u  # CDF log(α)/log(α_max)
    else:
        e = 1.0 - power  # CDF (α^e - 1)/(α_max^e - 1)
        alpha = (1.0 + u * (alpha_max**e - 1.0)) ** (1.0 / e)
    return alpha.clamp(1.0, alpha_max).to(device=device, dtype=torch.float32)


def cfg_negative_weight(alpha: Tensor, num_generated: int, num_uncond: int) -> Tensor:
    """Kernel weight w = (α-1)(G-1)/N_unc of each unconditional negative; α [B] -> w [B].

    From paper A.7: with G generations (G-1 negatives after the self-mask) and N_unc real
    samples of other conditions weighted w, the effective negative distribution is
    q̃ = (1 - γ) q + γ p_unc with α = 1/(1 - γ). α = 1 gives w = 0, i.e. no guidance.
    """
    if num_generated < 2 or num_uncond < 1:
        raise ValueError(
            f"CFG needs >= 2 generations and >= 1 unconditional sample, "
            f"got G={num_generated}, N_unc={num_uncond}"
        )
    if bool((alpha < 1).any()):
        raise ValueError(f"CFG scales must be >= 1, got min {float(alpha.min()):.4g}")
    return (alpha.float() - 1.0) * (num_generated - 1) / num_uncond
