"""Fixtures of the trainer tests."""

from pathlib import Path

import pytest
from training_set import DATASET, TINY, write_training_set

from drifting_kedro.training.config import TrainConfig


@pytest.fixture(scope="module")
def training_set(tmp_path_factory) -> dict[str, str]:
    return write_training_set(tmp_path_factory.mktemp("training_set"))


@pytest.fixture
def train_config(training_set, tmp_path):
    """A tiny CPU configuration writing into its own run folder; override fields per test."""

    def make(**fields) -> Path:
        defaults = {
            "run_dir": str(tmp_path / "run"),
            "table_path": training_set["table"],
            "stats_path": training_set["stats"],
            "feature_paths": {DATASET: training_set["features"]},
            **TINY,
            "max_steps": 12,
            "checkpoint_every": 4,
        }
        config = TrainConfig(**{**defaults, **fields})
        Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        path = Path(config.run_dir) / "config.json"
        config.save(path)
        return path

    return make
