"""Multi-step comparison heads on the same DiT: DDPM/DDIM diffusion and rectified flow.

The drifting policy acts in one forward pass; these train the identical network (built with
head="diffusion" or "flow", so the noisy action is its input and a timestep joins c_global) and
need K passes per action chunk. They exist to measure what the one-step policy costs or saves
in success and latency against a multi-step generator of the same size, trained on the same data.
Noise is drawn on the embodiment's active dims only, so inactive dims stay exactly zero.
"""

import math

import torch

from drifting_kedro.model.config import PolicyConfig
from drifting_kedro.model.dit import DriftingPolicy, check_cond

BETA_SCHEDULES = ("cosine", "linear")


class DiffusionHead:
    """DDPM epsilon-prediction training and a deterministic DDIM sampler (eta = 0)."""

    def __init__(self, num_train_timesteps: int = 100, beta_schedule: str = "cosine"):
        if num_train_timesteps < 1:
            raise ValueError(
                f"diffusion num_train_timesteps must be >= 1, got {num_train_timesteps}"
            )
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"diffusion beta_schedule={beta_schedule!r} not in {BETA_SCHEDULES}")
        self.num_train_timesteps = num_train_timesteps
        self.alphas_cumprod = torch.cumprod(1.0 - _betas(beta_schedule, num_train_timesteps), 0)

    def loss(
        self, model: DriftingPolicy, actions: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE between predicted and drawn noise on active dims, at a uniform random step."""
        mask = _prepare(model, "diffusion", actions, cond)  # [B, 1, A]
        n = actions.shape[0]
        t = torch.randint(0, self.num_train_timesteps, (n,), device=actions.device)
        a = self.alphas_cumprod.to(actions.device)[t].view(n, 1, 1).to(actions.dtype)
        noise = torch.randn_like(actions) * mask  # [B, T, A]
        x_t = a.sqrt() * actions * mask + (1 - a).sqrt() * noise
        eps = model(x_t, **cond, timestep=t.to(actions.dtype) / self.num_train_timesteps)
        loss = masked_mse(eps, noise, mask)
        return loss, {"loss": float(loss.detach())}

    @torch.no_grad()
    def sample(
        self,
        model: DriftingPolicy,
        cond: dict[str, torch.Tensor],
        num_steps: int,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """K deterministic DDIM steps from noise to actions [B, T, A] (K <= num_train_timesteps)."""
        if not 1 <= num_steps <= self.num_train_timesteps:
            raise ValueError(
                f"diffusion num_steps must be in [1, {self.num_train_timesteps}], got {num_steps}"
            )
        x, mask = _initial_noise(model, "diffusion", cond, generator, noise)  # [B, T, A], [B, 1, A]
        big_n, n = self.num_train_timesteps, x.shape[0]
        # Evenly spaced "leading" steps (N//K)(K-1) ... 0 as diffusers' DDIM: starting at N-1
        # would divide by sqrt(alpha_bar) ~ 1e-3 there and blow up the x0 estimate.
        stride = big_n // num_steps
        steps = [stride * (num_steps - 1 - i) for i in range(num_steps)]
        alphas = self.alphas_cumprod.tolist()
        for i, t in enumerate(steps):
            a_t = alphas[t]
            a_prev = alphas[steps[i + 1]] if i + 1 < num_steps else 1.0
            timestep = torch.full((n,), t / big_n, device=x.device, dtype=x.dtype)
            eps = model(x, **cond, timestep=timestep)
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            x = (math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps) * mask
        return x


class FlowMatchingHead:
    """Rectified flow: x_t = (1 - t) noise + t x, velocity target x - noise, Euler sampler."""

    def loss(
        self, model: DriftingPolicy, actions: torch.Tensor, cond: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        mask = _prepare(model, "flow", actions, cond)  # [B, 1, A]
        n = actions.shape[0]
        t = torch.rand(n, device=actions.device, dtype=actions.dtype)
        noise = torch.randn_like(actions) * mask
        target = actions * mask
        x_t = (1 - t.view(n, 1, 1)) * noise + t.view(n, 1, 1) * target
        velocity = model(x_t, **cond, timestep=t)
        loss = masked_mse(velocity, target - noise, mask)
        return loss, {"loss": float(loss.detach())}

    @torch.no_grad()
    def sample(
        self,
        model: DriftingPolicy,
        cond: dict[str, torch.Tensor],
        num_steps: int,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """K Euler steps of the learned velocity from t = 0 (noise) to t = 1: actions [B, T, A]."""
        if num_steps < 1:
            raise ValueError(f"flow num_steps must be >= 1, got {num_steps}")
        x, mask = _initial_noise(model, "flow", cond, generator, noise)
        n, dt = x.shape[0], 1.0 / num_steps
        for i in range(num_steps):
            timestep = torch.full((n,), i * dt, device=x.device, dtype=x.dtype)
            x = (x + dt * model(x, **cond, timestep=timestep)) * mask
        return x


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over active dims only; pred/target [B, T, A], mask [B, 1, A]."""
    weight = mask.expand_as(pred)
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)


def _betas(schedule: str, n: int) -> torch.Tensor:
    """DDPM betas [n] in float64; the linear range is rescaled to n steps as in Improved DDPM."""
    if schedule == "linear":
        scale = 1000.0 / n
        return torch.linspace(scale * 1e-4, scale * 0.02, n, dtype=torch.float64)
    # cosine (Nichol & Dhariwal): alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi / 2)
    s = torch.arange(n + 1, dtype=torch.float64) / n
    alpha_bar = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def _config(model: torch.nn.Module) -> PolicyConfig:
    """The policy's config, also through a DDP/FSDP wrapper (which holds it as `.module`)."""
    return getattr(model, "module", model).config


def _check_head(model: DriftingPolicy, head: str) -> None:
    if _config(model).head != head:
        raise ValueError(
            f"the {head} head needs a policy built with head={head!r}, got "
            f"head={_config(model).head!r} (build_policy(size, head={head!r}))"
        )


def _prepare(
    model: DriftingPolicy, head: str, actions: torch.Tensor, cond: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Validate a training batch; returns the active-dim mask [B, 1, A] in the actions' dtype."""
    _check_head(model, head)
    check_cond(cond)
    config = _config(model)
    expected = (cond["vlm_tokens"].shape[0], config.action_horizon, config.action_dim)
    if tuple(actions.shape) != expected:
        raise ValueError(
            f"{head} loss: actions have shape {tuple(actions.shape)}, expected {expected}"
        )
    return (cond["action_mask"] > 0).to(actions.dtype).unsqueeze(1)


def _initial_noise(
    model: DriftingPolicy,
    head: str,
    cond: dict[str, torch.Tensor],
    generator: torch.Generator | None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's start [B, T, A]: `noise` if given (the samplers are deterministic from
    there), else a draw from `generator`; and the active-dim mask [B, 1, A]."""
    _check_head(model, head)
    check_cond(cond)
    x = (
        model.draw_noise(cond["vlm_tokens"].shape[0], cond["vlm_tokens"].device, generator)
        if noise is None
        else noise
    )
    mask = (cond["action_mask"] > 0).to(x.dtype).unsqueeze(1)  # [B, 1, A]
    return x * mask, mask


def make_head(config: PolicyConfig) -> DiffusionHead | FlowMatchingHead:
    """The multi-step head a non-drifting config was built for (diffusion or flow)."""
    heads = {"diffusion": DiffusionHead, "flow": FlowMatchingHead}
    if config.head not in heads:
        raise ValueError(
            f"head={config.head!r} has no multi-step sampler; expected {sorted(heads)}"
        )
    return heads[config.head]()
