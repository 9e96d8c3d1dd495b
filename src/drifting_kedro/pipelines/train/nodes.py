"""Nodes of the train stage: write the trainer's inputs, launch torchrun, return the checkpoint."""

import json
import logging
import time
from pathlib import Path

import mlflow
import pandas as pd

from drifting_kedro.launch import LaunchConfig, run_torchrun
from drifting_kedro.training.checkpoint import load_checkpoint
from drifting_kedro.training.config import TrainConfig

logger = logging.getLogger(__name__)


def train_policy(
    *,
    unified_actions: pd.DataFrame,
    norm_stats: dict,
    vlm_features: dict[str, str],
    frames: dict[str, dict],
    train_options: dict,
    launch_options: dict,
) -> dict:
    """Train the policy under torchrun, logging into this Kedro run's MLflow run.

    Args:
        unified_actions: unified per-frame table (the train split is used).
        norm_stats: per-dataset statistics.
        vlm_features: `dataset -> feature store path`.
        frames: the frame-store manifest (read by online-VLM mode, `trainer.online_backbone`).
        train_options: `params:train` (runs_dir, resume_from, trainer fields).
        launch_options: `params:train_launch` (torchrun settings).

    Returns:
        The final checkpoint (model, EMA, optimizer, configs), versioned by the catalog.
    """
    run_dir = _run_dir(train_options)
    run_dir.mkdir(parents=True, exist_ok=True)
    table_path, stats_path = run_dir / "train_table.parquet", run_dir / "norm_stats.json"
    unified_actions[unified_actions["split"] == "train"].to_parquet(table_path)
    stats_path.write_text(json.dumps(norm_stats))
    config = TrainConfig(
        run_dir=str(run_dir),
        table_path=str(table_path),
        stats_path=str(stats_path),
        feature_paths={name: str(path) for name, path in vlm_features.items()},
        frame_paths={name: entry["path"] for name, entry in frames.items()},
        **train_options["trainer"],
    )
    config_path = run_dir / "config.json"
    config.save(config_path)
    run_torchrun(
        "drifting_kedro.training.train",
        ["--config", str(config_path)],
        LaunchConfig(**launch_options),
        env=_mlflow_env(),
    )
    return load_checkpoint(run_dir / "checkpoints" / "final.pt")


def _run_dir(train_options: dict) -> Path:
    """A new run directory, or the one named by `train.resume_from` to continue a killed run."""
    if train_options.get("resume_from"):
        resumed = Path(train_options["resume_from"])
        if not (resumed / "checkpoints" / "last.pt").exists():
            raise FileNotFoundError(
                f"train.resume_from={resumed} holds no checkpoints/last.pt to resume from"
            )
        return resumed
    active = mlflow.active_run()
    name = active.info.run_id if active else time.strftime("%Y%m%d-%H%M%S")
    return Path(train_options["runs_dir"]) / name


def _mlflow_env() -> dict[str, str]:
    """The trainer's rank 0 logs into the session's run: pass its id, never start another."""
    active = mlflow.active_run()
    if active is None:
        return {}
    return {"MLFLOW_RUN_ID": active.info.run_id, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
