"""Checkpoints: written atomically, readable with `torch.load(weights_only=True)`."""

import json
import os
from pathlib import Path

import torch


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename: never a torn checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint without unpickling arbitrary objects."""
    return torch.load(path, map_location=map_location, weights_only=True)


def load_run_checkpoint(path: Path) -> tuple[dict, dict]:
    """A checkpoint file of a training run and the normalization statistics it was trained on.

    A kept `step_<N>.pt` is evaluated with its own run's statistics, not whatever the catalog
    holds now: de-normalizing with another run's statistics would mis-scale every action.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} is not a file; a training run keeps checkpoints/step_<N>.pt "
            "every train.trainer.keep_every steps"
        )
    checkpoint = load_checkpoint(path)
    stats_path = Path(checkpoint["train_config"]["stats_path"])
    if not stats_path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} was trained with normalization statistics {stats_path}, "
            "which no longer exist"
        )
    return checkpoint, json.loads(stats_path.read_text())
