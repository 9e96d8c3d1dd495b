"""A training run's folder: what a new run writes before torchrun starts, what a resume
continues from, and the final checkpoint it returns.

A new run keeps its own train split, statistics and `config.json`, so it can be resumed or
evaluated whatever the catalog holds later; a resume never rewrites them.
"""

import json
import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drifting_kedro.training.checkpoint import latest_intact_checkpoint, load_checkpoint
from drifting_kedro.training.config import TrainConfig, check_action_horizon, resume_config

logger = logging.getLogger(__name__)


def new_run(
    train_split: pd.DataFrame,
    norm_stats: dict,
    vlm_features: dict[str, str],
    frames: dict[str, dict],
    train_options: dict,
    *,
    run_name: str,
) -> TrainConfig:
    """Validate the options, then write the trainer's inputs into the folder `run_name`."""
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


def resumed_run(
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


def finished_checkpoint(config: TrainConfig, step: int) -> dict | None:
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


def final_checkpoint(config: TrainConfig) -> dict:
    """The checkpoint a finished run wrote, or an error saying how to continue it."""
    final = Path(config.run_dir) / "checkpoints" / "final.pt"
    if not final.exists():
        raise FileNotFoundError(
            f"training stopped before train.trainer.max_steps={config.max_steps} "
            f"(train.trainer.stop_after_step={config.stop_after_step}), so there is no {final}; "
            f"continue it with train.resume_from={config.run_dir}"
        )
    return load_checkpoint(final)
