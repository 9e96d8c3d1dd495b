"""MLflow runs a person can tell apart: names, code and dataset versions, and their hook."""

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from mlflow.tracking import MlflowClient

from drifting_kedro import run_metadata
from drifting_kedro.hooks import RunMetadataHooks
from drifting_kedro.run_metadata import DatasetVersion
from drifting_kedro.tracking import MlflowRunLogger

PARAMETERS = {
    "demonstrations": [{"name": "aloha_sim_transfer_cube", "root": "data/01_raw/aloha"}],
    "ingest": {"sources": [{"name": "droid", "kind": "lerobot_v3", "repo_id": "lerobot/droid"}]},
    "train": {"trainer": {"head": "drifting", "max_steps": 20}},
    "evaluate": {"checkpoint": ""},
}
MANIFEST = {
    "aloha_sim_transfer_cube": {"episodes": 2, "frames": 800, "path": "frames/aloha.h5"},
    "droid": {"episodes": 5, "frames": 1500, "path": "frames/droid.h5"},
}


def lerobot_root(root: Path, episodes: bytes = b"episodes v1") -> Path:
    """The files of a LeRobot v3 root that matter here: metadata, and one (large) data file."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0"}))
    (root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").write_bytes(episodes)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000" / "file-000.parquet").write_bytes(b"frames")
    return root


def test_run_names_say_pipeline_env_and_policy():
    assert run_metadata.pipeline_label(None) == "default"
    assert run_metadata.pipeline_label(["ingest", "train"]) == "ingest+train"
    policy = run_metadata.policy_label("drifting", 2000)
    assert (
        run_metadata.run_name("default", "local", policy)
        == "default · local · drifting · 2000 steps"
    )
    assert run_metadata.run_name("precompute", "smoke") == "precompute · smoke"

    checkpoint = {"train_config": {"head": "flow", "run_dir": "data/runs/3f2a"}, "step": 500}
    label, tags = run_metadata.checkpoint_facts(checkpoint)
    assert label == "flow · 500 steps"
    assert tags == {"checkpoint.run": "3f2a", "checkpoint.step": "500"}


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


def test_git_tags_name_the_commit_and_whether_the_tree_had_changes(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "nodes.py").write_text("x = 1\n")
    _git(tmp_path, "add", "nodes.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD").strip()
    assert run_metadata.git_tags(tmp_path) == {"git.commit": head, "git.dirty": "false"}

    (tmp_path / "nodes.py").write_text("x = 2\n")
    assert run_metadata.git_tags(tmp_path) == {"git.commit": head, "git.dirty": "true"}


def test_git_tags_are_unknown_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    unknown = {"git.commit": "unknown", "git.dirty": "unknown"}
    assert run_metadata.git_tags(tmp_path) == unknown
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable
    assert run_metadata.git_tags(Path(__file__).parent) == unknown


def test_dataset_digest_follows_the_metadata_and_never_the_data_files(tmp_path):
    root = lerobot_root(tmp_path / "aloha")
    digest = run_metadata.lerobot_meta_digest(root)
    assert len(digest) == run_metadata.DIGEST_LENGTH

    (root / "data" / "chunk-000" / "file-000.parquet").write_bytes(b"other frames")
    assert run_metadata.lerobot_meta_digest(root) == digest  # data and videos are never read
    other = lerobot_root(tmp_path / "other", episodes=b"episodes v2")
    assert run_metadata.lerobot_meta_digest(other) != digest
    assert run_metadata.lerobot_meta_digest(tmp_path / "rlbench") is None  # no meta/info.json


def test_dataset_versions_locate_each_ingested_dataset_through_its_configuration(tmp_path):
    lerobot_root(tmp_path / "data/01_raw/aloha")
    sources = run_metadata.configured_sources(PARAMETERS)
    manifest = {**MANIFEST, "removed": {"episodes": 1, "frames": 10}}
    aloha, droid, removed = run_metadata.dataset_versions(sources, manifest, tmp_path)

    assert aloha == DatasetVersion(
        name="aloha_sim_transfer_cube",
        location="data/01_raw/aloha",
        on_hub=False,
        episodes=2,
        frames=800,
        digest=run_metadata.lerobot_meta_digest(tmp_path / "data/01_raw/aloha"),
    )
    assert (droid.location, droid.on_hub, droid.episodes, droid.frames) == (
        "lerobot/droid",
        True,
        5,
        1500,
    )
    assert (removed.location, removed.on_hub) == ("unknown", False)
    # Without metadata to read, the digest still changes with what ingest read.
    fewer = run_metadata.dataset_versions(
        sources, {"droid": {"episodes": 4, "frames": 1500}}, tmp_path
    )
    assert fewer[0].digest != droid.digest


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def active_run(tracking_uri):
    """A run started the way kedro-mlflow starts one: named after the pipeline."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("tracking_tests")
    with mlflow.start_run(run_name="__default__") as run:
        yield run.info.run_id


def test_run_logger_names_tags_and_logs_dataset_versions(tracking_uri, active_run):
    logger = MlflowRunLogger(active_run, tracking_uri)
    logger.set_name("default · smoke · drifting · 20 steps")
    logger.set_tags({"git.dirty": "false"})
    version = DatasetVersion("aloha", "data/01_raw/aloha", False, 2, 800, "0123abcd")
    hub = DatasetVersion("droid", "lerobot/droid", True, 5, 1500, "4567cdef")
    logger.log_dataset_versions([version, hub], "training")

    run = MlflowClient(tracking_uri).get_run(active_run)
    assert run.info.run_name == "default · smoke · drifting · 20 steps"
    assert run.data.tags["git.dirty"] == "false"
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert inputs["aloha"].dataset.digest == "0123abcd"
    assert json.loads(inputs["aloha"].dataset.profile) == {"episodes": 2, "frames": 800}
    assert json.loads(inputs["aloha"].dataset.source) == {"uri": "data/01_raw/aloha"}
    assert inputs["droid"].dataset.source_type == "hugging_face"
    assert json.loads(inputs["droid"].dataset.source)["path"] == "lerobot/droid"
    assert {(t.key, t.value) for t in inputs["aloha"].tags} == {("mlflow.data.context", "training")}


def _pipeline(*outputs: str) -> Pipeline:
    return Pipeline(
        [Node(lambda *_: None, inputs="params:train", outputs=name, name=name) for name in outputs]
    )


def _catalog(**datasets) -> DataCatalog:
    data = {"parameters": PARAMETERS, **datasets}
    return DataCatalog(datasets={name: MemoryDataset(value) for name, value in data.items()})


def _run_params(tmp_path: Path, pipeline_names: list[str] | None, env: str | None) -> dict:
    return {"project_path": str(tmp_path), "pipeline_names": pipeline_names, "env": env}


def test_hook_names_a_training_run_and_logs_the_datasets_ingest_read(
    tmp_path, tracking_uri, active_run
):
    lerobot_root(tmp_path / "data/01_raw/aloha")
    hooks = RunMetadataHooks()
    run_params = _run_params(tmp_path, None, "smoke")
    pipeline = _pipeline("frames", "policy_checkpoint")
    hooks.before_pipeline_run(run_params, pipeline, _catalog())
    hooks.after_node_run(inputs={}, outputs={"frames": MANIFEST})

    run = MlflowClient(tracking_uri).get_run(active_run)
    assert run.info.run_name == "default · smoke · drifting · 20 steps"
    tags = run.data.tags
    assert (tags["kedro.pipeline"], tags["kedro.env"]) == ("default", "smoke")
    assert (tags["git.commit"], tags["git.dirty"]) == ("unknown", "unknown")  # not a checkout
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == set(MANIFEST)
    assert [t.value for t in inputs["droid"].tags] == ["training"]


def test_hook_names_an_evaluate_only_run_after_the_checkpoint_it_scores(
    tmp_path, tracking_uri, active_run
):
    hooks = RunMetadataHooks()
    run_params = _run_params(tmp_path, ["evaluate"], None)
    catalog = _catalog(frames=MANIFEST)  # what an earlier ingest left
    hooks.before_pipeline_run(run_params, _pipeline("evaluation_summary"), catalog)
    client = MlflowClient(tracking_uri)
    assert client.get_run(active_run).info.run_name == "evaluate · local"
    inputs = client.get_run(active_run).inputs.dataset_inputs
    assert {t.value for i in inputs for t in i.tags} == {"evaluation"}

    checkpoint = {"train_config": {"head": "drifting", "run_dir": "runs/3f2a"}, "step": 2000}
    hooks.after_node_run(inputs={"policy_checkpoint": checkpoint}, outputs={})
    run = client.get_run(active_run)
    assert run.info.run_name == "evaluate · local · drifting · 2000 steps"
    assert run.data.tags["checkpoint.run"] == "3f2a"


def test_hook_leaves_a_run_alone_when_tracking_is_disabled(tmp_path):
    assert mlflow.active_run() is None
    hooks = RunMetadataHooks()
    hooks.before_pipeline_run(_run_params(tmp_path, None, None), _pipeline("frames"), _catalog())
    hooks.after_node_run(inputs={}, outputs={"frames": MANIFEST})
    assert mlflow.active_run() is None
