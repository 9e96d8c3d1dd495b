"""Action chunks from a trained policy of any head: what evaluation calls to act or to score.

The drifting head draws G chunks in one forward pass; the diffusion / flow baselines run K
sampler steps, on the observations repeated G times. One entry point, so offline metrics and
closed-loop rollouts score a baseline checkpoint exactly as they score a drifting one.
"""

import torch

from drifting_kedro.model.baseline import make_head
from drifting_kedro.model.dit import DriftingPolicy


def check_sampling_steps(model: DriftingPolicy, num_steps: int) -> None:
    """The drifting head acts in one step; a multi-step head needs K >= 1 steps."""
    if model.config.head == "drifting" and num_steps != 1:
        raise ValueError(f"the drifting head acts in one step; got num_steps={num_steps}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")


@torch.no_grad()
def sample_chunks(
    model: DriftingPolicy,
    cond: dict[str, torch.Tensor],
    num_samples: int,
    num_steps: int = 1,
    generator: torch.Generator | None = None,
    *,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B, G, T, action_dim] chunks: G draws per observation, K = `num_steps` sampler steps.

    `noise` [B*G, T, d_noise] (draws of one observation adjacent) replaces the draw from
    `generator`: every head is deterministic from its starting noise.
    """
    check_sampling_steps(model, num_steps)
    if model.config.head == "drifting":
        return model.generate(cond, num_samples, generator, noise)
    repeated = {key: value.repeat_interleave(num_samples, dim=0) for key, value in cond.items()}
    chunks = make_head(model.config).sample(model, repeated, num_steps, generator, noise)
    return chunks.view(-1, num_samples, *chunks.shape[1:])
