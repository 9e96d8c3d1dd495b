"""One optimizer step of the embedded default's training, by variant, timed side by side.

    python benchmarks/training_step.py --steps 10 --rounds 3

The step is the trainer's: the tiny DiT (50-step chunks in patches of 5, small-real's 480-wide
tokens, 37 per view) draws G chunks per observation, the conditional drifting loss compares
them with the observation's chunk, backward, gradient clipping, AdamW and the EMA update. The
batch mixes ALOHA (bimanual joints, 14 of the 128 dims) and Fetch (absolute targets, 4 dims)
observations half and half, as the default trains. Variants, interleaved in rounds so a busy
machine slows them alike:

- `full-width`: the field on all T x 128 = 6,400 chunk columns (the trainer before it dropped
  the columns no row keeps);
- `kept columns`: the field on the union of the rows' active columns (~900), the same loss;
- the same at G = 4 and G = 2 draws per observation (a different objective, for its cost).

Prints the median seconds per step and the ratio to `full-width` at G = 8.
"""
# ruff: noqa: T201  (benchmarks print their figures)

import argparse
import statistics
import time
from contextlib import contextmanager

import torch

from drifting_kedro.action_space import action_mask, embodiment_id, state_mask
from drifting_kedro.drifting import drifting_loss, ema_decay_at, update_ema
from drifting_kedro.drifting import loss as loss_module
from drifting_kedro.model import DriftingPolicy, policy_config

DATASETS = ("aloha_sim_transfer_cube", "fetch_pick_and_place_abs")
TOKENS = {"aloha_sim_transfer_cube": 37, "fetch_pick_and_place_abs": 73}  # views x 36 + language


def make_batch(batch_size: int, horizon: int, hidden: int, seed: int = 0) -> dict:
    """Half ALOHA, half Fetch observations with random features and chunks."""
    gen = torch.Generator().manual_seed(seed)
    names = [DATASETS[i % 2] for i in range(batch_size)]
    length = max(TOKENS.values())
    masks = torch.stack([torch.from_numpy(action_mask(n)) for n in names]).bool()
    actions = torch.randn(batch_size, horizon, 128, generator=gen) * masks[:, None]
    vlm_mask = torch.stack([torch.arange(length) < TOKENS[n] for n in names])
    return {
        "vlm_tokens": torch.randn(batch_size, length, hidden, generator=gen),
        "vlm_mask": vlm_mask,
        "token_camera": torch.where(torch.arange(length) < 36, 0, 1).expand(batch_size, -1),
        "pooled": torch.randn(batch_size, hidden, generator=gen),
        "embodiment_id": torch.tensor([embodiment_id(n) for n in names]),
        "state": torch.randn(batch_size, 128, generator=gen),
        "state_mask": torch.stack([torch.from_numpy(state_mask(n)) for n in names]).float(),
        "action_mask": masks.float(),
        "actions": actions,
    }


@contextmanager
def full_width_field(enabled: bool):
    """Keep every column: what the trainer computed before dropping unused ones."""
    original = loss_module._kept_columns
    if enabled:
        loss_module._kept_columns = lambda mask, dim: torch.arange(dim)
    try:
        yield
    finally:
        loss_module._kept_columns = original


def train_step(model, ema, optimizer, batch: dict, *, generations: int, step: int) -> None:
    count, horizon = batch["actions"].shape[:2]
    cond = {k: v for k, v in batch.items() if k != "actions"}
    cond["cfg_alpha"] = torch.ones(count)
    generator = torch.Generator().manual_seed(step)
    noise = model.draw_noise(count * generations, torch.device("cpu"), generator)
    x = model(noise, **cond).view(count, generations, -1)  # [B, G, T*128]
    mask = batch["action_mask"].bool()[:, None, :].expand(-1, horizon, -1).flatten(1)
    loss, _ = drifting_loss(x, batch["actions"].flatten(1)[:, None], mask=mask)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    update_ema(ema, model, ema_decay_at(step, 0.999))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a rank's count)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = policy_config("tiny", action_horizon=50, action_patch=5, vlm_hidden_size=480)
    model = DriftingPolicy(config)
    ema = DriftingPolicy(config).requires_grad_(False)
    optimizer = model.configure_optimizers(0.05, 1e-3, (0.9, 0.95))
    batch = make_batch(args.batch_size, 50, 480)
    variants = {
        "full-width, G=8": (True, 8),
        "kept columns, G=8": (False, 8),
        "kept columns, G=4": (False, 4),
        "kept columns, G=2": (False, 2),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    step = 0
    for _ in range(args.rounds):
        for name, (full, generations) in variants.items():
            with full_width_field(full):
                # one untimed warm-up step per variant and round
                train_step(model, ema, optimizer, batch, generations=generations, step=step)
                for _ in range(args.steps):
                    start = time.perf_counter()
                    train_step(model, ema, optimizer, batch, generations=generations, step=step)
                    times[name].append(time.perf_counter() - start)
                    step += 1
    base = statistics.median(times["full-width, G=8"])
    print(f"batch {args.batch_size} per rank, {args.threads} thread(s), {args.rounds} rounds")
    print("| variant | s/step (median) | vs full-width G=8 |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
