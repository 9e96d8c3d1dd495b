"""A small training set in the project's real formats: unified table, statistics, feature store."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drifting_kedro.action_space import state_to_unified, to_unified
from drifting_kedro.features.backbone import BackboneOutput
from drifting_kedro.features.store import FeatureStoreWriter
from drifting_kedro.normalization import compute_stats

DATASET = "aloha_sim_transfer_cube"
HIDDEN = 16


def write_training_set(root: Path, episodes: int = 3, length: int = 30) -> dict[str, str]:
    """Random-walk 14-D joint trajectories with per-frame features that identify the frame."""
    rng = np.random.default_rng(0)
    rows, tokens = [], []
    for episode in range(episodes):
        native = np.cumsum(rng.normal(scale=0.05, size=(length, 14)), axis=0).astype(np.float32)
        for frame in range(length):
            rows.append((DATASET, episode, frame, "train", native[frame], native[frame]))
        tokens.append(rng.normal(size=(length, 3, HIDDEN)).astype(np.float32))
    table = pd.DataFrame(
        rows, columns=["dataset", "episode_index", "frame_index", "split", "action", "state"]
    )
    actions = to_unified(np.stack(table["action"].to_numpy()), DATASET)
    states = state_to_unified(np.stack(table["state"].to_numpy()), DATASET)
    table["action"], table["state"] = list(actions), list(states)
    table_path, stats_path = root / "table.parquet", root / "stats.json"
    table.to_parquet(table_path)
    stats = compute_stats(actions, states, table["dataset"].to_numpy())
    stats_path.write_text(json.dumps(stats.to_dict()))

    store_path = root / "features.h5"
    attrs = {
        "dataset": DATASET,
        "backbone": "fixture",
        "config_hash": "0",
        "random_init": True,
        "hidden_size": HIDDEN,
        "source_version": "fixture",
    }
    writer = FeatureStoreWriter(store_path, attrs)
    for episode, episode_tokens in enumerate(tokens):
        batch = torch.from_numpy(episode_tokens)  # [T, L, H]
        output = BackboneOutput(
            tokens=batch,
            mask=torch.ones(batch.shape[:2], dtype=torch.bool),
            pooled=batch.mean(1),
            token_camera=torch.zeros(batch.shape[:2], dtype=torch.long),
        )
        writer.append(output, np.full(length, episode), np.arange(length))
    writer.close(complete=True)
    return {"table": str(table_path), "stats": str(stats_path), "features": str(store_path)}


# A trainer small enough for a CPU test: a few steps take seconds.
TINY = {
    "model_overrides": {"hidden_size": 32, "depth": 2, "num_heads": 2, "noise_dim": 8},
    "action_horizon": 8,
    "batch_size": 4,
    "generations": 4,
    "warmup_steps": 2,
    "log_every": 1,
}


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
