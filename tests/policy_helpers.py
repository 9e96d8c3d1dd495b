"""Synthetic conditioning, weight perturbation and a tiny self-contained checkpoint shared by the
model, evaluation and serving tests."""

from dataclasses import asdict

import numpy as np
import torch

from drifting_kedro.action_space import UNIFIED_DIM
from drifting_kedro.model import LANGUAGE_TOKEN, DriftingPolicy, policy_config
from drifting_kedro.normalization import compute_stats
from drifting_kedro.training.checkpoint import registry_rows

VLM_HIDDEN = 48
# Active dims of the five embodiments: A, B, C, D (+ dex wrist A 0:7), E.
EMBODIMENT_DIMS = {
    0: list(range(0, 8)),
    1: list(range(8, 16)),
    2: list(range(16, 32)),
    3: list(range(0, 7)) + list(range(32, 48)),
    4: list(range(48, 56)),
}


def action_mask_for(embodiment_ids: list[int], action_dim: int = 128) -> torch.Tensor:
    mask = torch.zeros(len(embodiment_ids), action_dim)
    for row, embodiment in enumerate(embodiment_ids):
        mask[row, EMBODIMENT_DIMS[embodiment]] = 1.0
    return mask  # [B, A]


def make_cond(batch: int = 3, tokens: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Conditioning dict for B observations with L tokens (2 cameras + language, 2 frames)."""
    gen = torch.Generator().manual_seed(seed)
    embodiments = [i % 5 for i in range(batch)]
    camera = torch.tensor([0, 1, LANGUAGE_TOKEN] * tokens)[:tokens].repeat(batch, 1)
    vlm_mask = torch.ones(batch, tokens, dtype=torch.bool)
    vlm_mask[0, tokens // 2 :] = False  # the first observation is padded
    state_mask = torch.zeros(batch, 128)
    state_mask[:, :16] = 1.0
    return {
        "vlm_tokens": torch.randn(batch, tokens, VLM_HIDDEN, generator=gen),
        "vlm_mask": vlm_mask,
        "token_camera": camera,
        "token_frame": (torch.arange(tokens) % 2).repeat(batch, 1),
        "pooled": torch.randn(batch, VLM_HIDDEN, generator=gen),
        "embodiment_id": torch.tensor(embodiments),
        "state": torch.randn(batch, 128, generator=gen),
        "state_mask": state_mask,
        "action_mask": action_mask_for(embodiments),
        "cfg_alpha": 1.0 + 3.0 * torch.rand(batch, generator=gen),
    }


def perturb_zero_init(model: torch.nn.Module, std: float = 0.05, seed: int = 0) -> None:
    """Give every all-zero parameter small random values, as after some training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=gen) * std)


def tiny_checkpoint(dataset: str, vlm_hidden: int, horizon: int = 8, seed: int = 0) -> dict:
    """A self-contained checkpoint of an untrained tiny policy for `dataset`, as the trainer
    writes it (statistics and registry rows inside), whose chunks depend on noise and input.
    Its weights depend on `seed` alone, not on what used torch's global generator before."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DriftingPolicy(
            policy_config("tiny", vlm_hidden_size=vlm_hidden, action_horizon=horizon)
        )
    perturb_zero_init(model, seed=seed)
    rng = np.random.default_rng(seed)
    rows = 64
    stats = compute_stats(
        rng.normal(size=(rows, UNIFIED_DIM)), rng.normal(size=(rows, UNIFIED_DIM)), [dataset] * rows
    )
    return {
        "model": model.state_dict(),
        "ema": model.state_dict(),
        "model_config": asdict(model.config),
        "dataset_names": [dataset],
        "norm_stats": stats.to_dict(),
        "datasets": registry_rows([dataset]),
        "step": 0,
    }
