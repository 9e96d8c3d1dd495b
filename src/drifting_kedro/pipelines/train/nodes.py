"""Nodes of the train stage: check the options, prepare the run folder, launch torchrun."""

import json
import logging
import time
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drifting_kedro.launch import run_torchrun
from drifting_kedro.training.checkpoint import latest_intact_checkpoint, load_checkpoint
from drifting_kedro.training.config import (
    TrainConfig,
    check_action_horizon,
    check_train_options,
    launch_config,
    resume_config,
)

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
        config, step = _resumed_config(
            run_dir, train_options.get("trainer", {}), train_split, norm_stats
        )
        finished = _finished_checkpoint(config, step)
        if finished is not None:
            return finished
        config_path = run_dir / "resume_config.json"  # config.json stays the run's first one
    else:
        config = _new_run(train_split, norm_stats, vlm_features, frames, train_options)
        config_path = Path(config.run_dir) / "config.json"
    config.save(config_path)
    run_torchrun(
        "drifting_kedro.training.train",
        ["--config", str(config_path)],
        launch,
        env=_mlflow_env(),
    )
    return _final_checkpoint(config)


def _new_run(
    train_split: pd.DataFrame,
    norm_stats: dict,
    vlm_features: dict[str, str],
    frames: dict[str, dict],
    train_options: dict,
) -> TrainConfig:
    """Validate the options, then write the trainer's inputs into a new run folder."""
    active = mlflow.active_run()
    run_name = active.info.run_id if active else time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(train_options["runs_dir"]) / run_name
    config = TrainConfig.from_options(
        train_options.get("trainer", {}),
        run_dir=str(run_dir),
        table_path=str(run_dir / "train_table.parquet"),
        stats_path=str(run_dir / "norm_stats.json"),
        feature_paths={name: str(path) for name, path in vlm_features.items()},
        frame_paths={name: entry["path"] for name, entry in frames.items()},
    )
    episodes = train_split.groupby(["dataset", "episode_index"]).size()
    warning = check_action_horizon(
        episodes.groupby(level="dataset").max().to_dict(), config.action_horizon
    )
    if warning:
        logger.warning(warning)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_split.to_parquet(config.table_path)
    Path(config.stats_path).write_text(json.dumps(norm_stats))
    return config


def _resumed_config(
    run_dir: Path, trainer_options: dict, train_split: pd.DataFrame, norm_stats: dict
) -> tuple[TrainConfig, int]:
    """The run's configuration at its newest intact checkpoint, on the run's own files, with the
    current options that differ applied (each logged); and that checkpoint's step."""
    table_path, stats_path = run_dir / "train_table.parquet", run_dir / "norm_stats.json"
    for path in (table_path, stats_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"train.resume_from={run_dir} has no {path.name}: not a run folder of the train "
                "pipeline (<train.runs_dir>/<run id>)"
            )
    point = latest_intact_checkpoint(run_dir / "checkpoints", mmap=True)
    if point is None:
        raise FileNotFoundError(
            f"train.resume_from={run_dir} holds no checkpoints/last.pt to resume from"
        )
    for reason in point.skipped:
        logger.warning("%s", reason)
    step = int(point.state["step"])
    run = TrainConfig(
        **{
            **point.state["train_config"],
            "run_dir": str(run_dir),  # the folder resumed, also when it is a copy
            "table_path": str(table_path),
            "stats_path": str(stats_path),
        }
    )
    stores = {**run.feature_paths, **(run.frame_paths if run.online_backbone else {})}
    for name, path in stores.items():
        if not Path(path).exists():
            raise FileNotFoundError(
                f"train.resume_from={run_dir} was trained on {path} ({name}), which no longer "
                "exists; start a new run instead"
            )
    config, changes = resume_config(run, trainer_options, step)
    logger.info("Resuming %s from %s (step %d)", run_dir, point.path, step)
    for change in changes:
        logger.warning("Resume: %s", change)
    if json.loads(stats_path.read_text()) != norm_stats:
        logger.warning("The catalog's norm_stats differ from the run's: it keeps %s", stats_path)
    if not pa.Table.from_pandas(train_split).equals(pq.read_table(table_path)):
        logger.warning("The catalog's train split differs from the run's: it keeps %s", table_path)
    return config, step


def _finished_checkpoint(config: TrainConfig, step: int) -> dict | None:
    """The run's final checkpoint when a resume at `step` has nothing left to train.

    `resume_config` never lowers `max_steps` below `step`; without a `final.pt` (killed before
    copying it) the trainer runs zero steps and writes it.
    """
    final = Path(config.run_dir) / "checkpoints" / "final.pt"
    if config.max_steps > step or not final.exists():
        return None
    logger.warning(
        "train.resume_from=%s is at step %d and train.trainer.max_steps=%d: nothing to train, "
        "returning its checkpoints/final.pt (raise train.trainer.max_steps to continue it)",
        config.run_dir, step, config.max_steps,
    )  # fmt: skip
    return load_checkpoint(final)


def _final_checkpoint(config: TrainConfig) -> dict:
    final = Path(config.run_dir) / "checkpoints" / "final.pt"
    if not final.exists():
        raise FileNotFoundError(
            f"training stopped before train.trainer.max_steps={config.max_steps} "
            f"(train.trainer.stop_after_step={config.stop_after_step}), so there is no {final}; "
            f"continue it with train.resume_from={config.run_dir}"
        )
    return load_checkpoint(final)


def _mlflow_env() -> dict[str, str]:
    """The trainer's rank 0 logs into the session's run: pass its id, never start another."""
    active = mlflow.active_run()
    if active is None:
        return {}
    return {"MLFLOW_RUN_ID": active.info.run_id, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
