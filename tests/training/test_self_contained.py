"""A checkpoint carries the normalization statistics and registry rows it was trained on, and is
evaluated with them whatever the run folder or the catalog hold later; a checkpoint written
before they were stored inside falls back to its run's statistics file, or says how to get one."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.runner import SequentialRunner
from training_set import DATASET, TINY

from drifting_kedro.datasets import AtomicJSONDataset, TorchCheckpointDataset
from drifting_kedro.evaluation.offline import offline_metrics
from drifting_kedro.evaluation.policy import InferencePolicy, load_policy_model
from drifting_kedro.normalization import DatasetStats
from drifting_kedro.pipelines.evaluate import create_pipeline
from drifting_kedro.training.checkpoint import (
    load_checkpoint,
    load_run_checkpoint,
    save_checkpoint,
)
from drifting_kedro.training.config import TrainConfig
from drifting_kedro.training.data import PolicySamples
from drifting_kedro.training.train import main

OFFLINE = {"generations": 2, "max_samples": 16}


@pytest.fixture(scope="module")
def run(training_set, tmp_path_factory) -> tuple[Path, Path, dict]:
    """A finished tiny run with kept checkpoints, trained on its own copy of the statistics:
    its checkpoints folder, that statistics file and its content."""
    root = tmp_path_factory.mktemp("self_contained")
    stats_path = root / "norm_stats.json"
    shutil.copy(training_set["stats"], stats_path)
    config = TrainConfig(
        run_dir=str(root / "run"),
        table_path=training_set["table"],
        stats_path=str(stats_path),
        feature_paths={DATASET: training_set["features"]},
        **TINY,
        max_steps=8,
        checkpoint_every=4,
        keep_every=4,
    )
    Path(config.run_dir).mkdir()
    config.save(Path(config.run_dir) / "config.json")
    main(Path(config.run_dir) / "config.json")
    return Path(config.run_dir) / "checkpoints", stats_path, json.loads(stats_path.read_text())


def shifted(stats: dict) -> dict:
    """Other statistics of the same datasets, as a later normalization run would write."""
    datasets = {
        name: {
            **entry,
            "action": {**entry["action"], "mean": [m + 1.0 for m in entry["action"]["mean"]]},
        }
        for name, entry in stats["datasets"].items()
    }
    return {**stats, "datasets": datasets}


def held_out(training_set) -> pd.DataFrame:
    table = pd.read_parquet(training_set["table"])
    return table.assign(split="val")


def test_a_kept_checkpoint_loads_its_own_statistics_when_the_run_folder_lost_them(run, tmp_path):
    folder, stats_path, stats = run
    kept = tmp_path / "step_4.pt"
    shutil.copy(folder / "step_4.pt", kept)
    shutil.copy(folder / "step_4.pt.sha256", tmp_path)
    moved = stats_path.rename(tmp_path / "elsewhere.json")  # the run folder loses its file
    try:
        assert load_run_checkpoint(kept)["norm_stats"] == stats
    finally:
        moved.rename(stats_path)


def test_evaluation_uses_the_checkpoints_statistics_not_the_catalogs_latest(
    run, training_set, tmp_path
):
    folder, _, stats = run
    catalog = DataCatalog(
        {
            "policy_checkpoint": TorchCheckpointDataset(
                str(tmp_path / "policy_checkpoint.pt"), version=Version(None, None)
            ),
            "norm_stats": AtomicJSONDataset(
                filepath=str(tmp_path / "norm_stats.json"), version=Version(None, None)
            ),
            "unified_actions": MemoryDataset(held_out(training_set)),
            "vlm_features": MemoryDataset({DATASET: training_set["features"]}),
            "params:evaluate": MemoryDataset(
                {"checkpoint": "", "use_ema": True, "sampling_steps": 1, "offline": OFFLINE}
            ),
        }
    )
    checkpoint = load_checkpoint(folder / "final.pt")
    catalog.save("policy_checkpoint", checkpoint)
    catalog.save("norm_stats", shifted(stats))  # a later normalization run: the latest version
    offline = create_pipeline().only_nodes("evaluate_offline_node")
    assert "norm_stats" not in offline.inputs()
    metrics = SequentialRunner().run(offline, catalog)["offline_metrics"].load()

    def scored_with(norm_stats: dict) -> dict[str, float]:
        model = load_policy_model(checkpoint)
        samples = PolicySamples(
            held_out(training_set),
            DatasetStats.from_dict(norm_stats),
            {DATASET: training_set["features"]},
            model.config.action_horizon,
        )
        return offline_metrics(model, samples, **OFFLINE, num_steps=1)[0]

    assert metrics == scored_with(stats)
    assert metrics[f"{DATASET}/mse"] != scored_with(shifted(stats))[f"{DATASET}/mse"]


def old_format(run, tmp_path) -> Path:
    """The run's final checkpoint as written before checkpoints carried statistics and rows."""
    folder, _, _ = run
    state = load_checkpoint(folder / "final.pt")
    del state["norm_stats"], state["datasets"]
    path = tmp_path / "old.pt"
    save_checkpoint(state, path)
    return path


def test_an_old_checkpoint_falls_back_to_its_runs_statistics_with_a_warning(run, tmp_path, caplog):
    _, stats_path, stats = run
    path = old_format(run, tmp_path)
    with caplog.at_level(logging.WARNING):
        loaded = load_run_checkpoint(path)
    assert loaded["norm_stats"] == stats
    assert list(loaded["datasets"]) == [DATASET]
    assert f"checkpoint {path} was written before" in caplog.text
    assert str(stats_path) in caplog.text


def test_an_old_checkpoint_without_its_runs_statistics_says_how_to_get_a_new_one(run, tmp_path):
    _, stats_path, _ = run
    path = old_format(run, tmp_path)
    moved = stats_path.rename(tmp_path / "elsewhere.json")
    try:
        with pytest.raises(FileNotFoundError) as error:
            load_run_checkpoint(path)
    finally:
        moved.rename(stats_path)
    message = str(error.value)
    assert str(path) in message and str(stats_path) in message
    assert "kedro run --pipelines=train" in message


def test_a_policy_whose_dataset_is_now_mapped_differently_is_refused(run):
    folder, _, _ = run
    checkpoint = load_run_checkpoint(folder / "final.pt")
    row = checkpoint["datasets"][DATASET]
    moved = {**row, "action_indices": [int(i) for i in np.roll(row["action_indices"], 1)]}
    checkpoint = {**checkpoint, "datasets": {DATASET: moved}}
    with pytest.raises(
        ValueError, match=rf"dataset '{DATASET}' is mapped differently.*action_indices"
    ):
        InferencePolicy.from_checkpoint(checkpoint, backbone=None, image_size=64)
