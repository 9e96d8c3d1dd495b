"""Nodes of the train stage: check the options, prepare the run folder, launch torchrun."""

import time
from pathlib import Path

import mlflow
import pandas as pd

from drifting_kedro.launch import run_torchrun
from drifting_kedro.training.config import check_train_options, launch_config
from drifting_kedro.training.runs import (
    final_checkpoint,
    finished_checkpoint,
    new_run,
    resumed_run,
)


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

    Every option is checked here, before torchrun starts. A new run writes its train split,
    statistics and `config.json` to a new run folder; a resume (`train.resume_from`) never
    rewrites them: it continues from the run's newest intact checkpoint, with the options that
    differ from that checkpoint's configuration applied and logged.

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
    check_train_options(train_options)
    launch = launch_config(launch_options, "train_launch")
    train_split = unified_actions[unified_actions["split"] == "train"]
    if train_options.get("resume_from"):
        run_dir = Path(train_options["resume_from"])
        config, step = resumed_run(
            run_dir, train_options.get("trainer", {}), train_split, norm_stats
        )
        finished = finished_checkpoint(config, step)
        if finished is not None:
            return finished
        config_path = run_dir / "resume_config.json"  # config.json stays the run's first one
    else:
        active = mlflow.active_run()
        run_name = active.info.run_id if active else time.strftime("%Y%m%d-%H%M%S")
        config = new_run(
            train_split, norm_stats, vlm_features, frames, train_options, run_name=run_name
        )
        config_path = Path(config.run_dir) / "config.json"
    config.save(config_path)
    run_torchrun(
        "drifting_kedro.training.train",
        ["--config", str(config_path)],
        launch,
        env=_mlflow_env(),
    )
    return final_checkpoint(config)


def _mlflow_env() -> dict[str, str]:
    """The trainer's rank 0 logs into the session's run: pass its id, never start another."""
    active = mlflow.active_run()
    if active is None:
        return {}
    return {"MLFLOW_RUN_ID": active.info.run_id, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
