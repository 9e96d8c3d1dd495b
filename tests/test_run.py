"""End to end: `kedro run --env=smoke` in a scratch copy of the project, as a user runs it."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

PROJECT = Path(__file__).resolve().parents[1]


def scratch_project(root: Path) -> Path:
    """The project's pyproject, telemetry choice and conf in `root`, so data/ and mlflow.db stay
    apart; the package itself comes from the installed project."""
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copy(PROJECT / ".telemetry", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    return root


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory) -> Path:
    return scratch_project(tmp_path_factory.mktemp("project"))


def kedro(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )


def test_registry_lists_every_pipeline(smoke_project):
    result = kedro(smoke_project, "registry", "list")
    assert result.returncode == 0, result.stderr
    for name in (
        "ingest",
        "action_mapping",
        "normalization",
        "features",
        "precompute",
        "train",
        "evaluate",
        "__default__",
    ):
        assert f"- {name}\n" in result.stdout


@pytest.fixture(scope="module")
def smoke_run(smoke_project) -> Path:
    """`kedro run --env=smoke` once for the tests that read what it wrote."""
    result = kedro(smoke_project, "run", "--env=smoke")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return smoke_project


@pytest.mark.slow
def test_smoke_run_trains_through_torchrun_and_tracks_in_mlflow(smoke_run):
    smoke_project = smoke_run

    checkpoints = list((smoke_project / "data/06_models/smoke/policy_checkpoint.pt").glob("*/*.pt"))
    assert len(checkpoints) == 1
    state = torch.load(checkpoints[0], weights_only=True)
    assert state["step"] == state["train_config"]["max_steps"]

    with sqlite3.connect(smoke_project / "mlflow.db") as db:
        runs = db.execute("select run_uuid, status from runs").fetchall()
        assert len(runs) == 1 and runs[0][1] == "FINISHED"
        params = {k for (k,) in db.execute("select key from params")}
        metrics = {k for (k,) in db.execute("select distinct key from metrics")}
    assert any(key.startswith("train.trainer.") for key in params)
    assert "train/loss" in metrics  # logged by rank 0 inside the torchrun subprocess
    assert "eval.aloha_sim_transfer_cube/success_rate" in metrics
    assert "eval.aloha_sim_transfer_cube/stage_lifted" in metrics  # how far failures got

    run = MlflowClient(f"sqlite:///{smoke_project / 'mlflow.db'}").get_run(runs[0][0])
    assert run.info.run_name == "default · smoke · drifting · 20 steps"
    assert (run.data.tags["kedro.pipeline"], run.data.tags["kedro.env"]) == ("default", "smoke")
    assert run.data.tags["git.commit"] == "unknown"  # the scratch project is no git checkout
    (data,) = run.inputs.dataset_inputs
    assert data.dataset.name == "aloha_sim_transfer_cube"
    assert json.loads(data.dataset.profile) == {"episodes": 2, "frames": 800}
    assert [(tag.key, tag.value) for tag in data.tags] == [("mlflow.data.context", "training")]


@pytest.mark.slow
def test_a_kept_checkpoint_evaluates_in_a_run_of_its_own(smoke_run):
    (kept,) = smoke_run.glob("data/06_models/smoke/runs/*/checkpoints/step_10.pt")
    evaluate = ("run", "--env=smoke", "--pipelines=evaluate")
    result = kedro(smoke_run, *evaluate, f"--params=evaluate.checkpoint={kept}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    mse = "eval.aloha_sim_transfer_cube/mse"
    with sqlite3.connect(smoke_run / "mlflow.db") as db:
        runs = db.execute("select run_uuid from runs order by start_time").fetchall()
        (final,), (step_10,) = runs
        params = dict(db.execute("select key, value from params where run_uuid = ?", (step_10,)))
        errors = dict(db.execute("select run_uuid, value from metrics where key = ?", (mse,)))
    assert params["evaluate.checkpoint"] == str(kept)
    assert errors[step_10] != errors[final]  # offline draws are seeded: another checkpoint
    evaluated = MlflowClient(f"sqlite:///{smoke_run / 'mlflow.db'}").get_run(step_10)
    assert evaluated.info.run_name == "evaluate · smoke · drifting · 10 steps"
    assert evaluated.data.tags["checkpoint.run"] == final  # its run folder is named after it
    assert [i.dataset.name for i in evaluated.inputs.dataset_inputs] == ["aloha_sim_transfer_cube"]

    missing = kedro(smoke_run, *evaluate, "--params=evaluate.checkpoint=step_99.pt")
    assert missing.returncode != 0
    assert "train.trainer.keep_every" in missing.stdout + missing.stderr


@pytest.mark.slow
def test_viz_build_shows_every_pipeline_and_catalog_entry(smoke_project):
    result = kedro(smoke_project, "viz", "build")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    graph = json.loads((smoke_project / "build" / "api" / "main").read_text())
    pipelines = {p["id"] for p in graph["pipelines"]}
    assert pipelines >= {
        "ingest",
        "action_mapping",
        "normalization",
        "features",
        "precompute",
        "train",
        "evaluate",
        "__default__",
    }
    datasets = {n["name"] for n in graph["nodes"] if n["type"] == "data"}
    assert datasets >= {
        "episodes",
        "unified_actions",
        "norm_stats",
        "vlm_features",
        "policy_checkpoint",
        "evaluation_summary",
    }


@pytest.mark.slow
def test_a_first_run_shows_no_third_party_warnings_nor_a_telemetry_notice(tmp_path):
    """A fresh clone's first run prints the project's own progress, not its libraries' notices."""
    project = scratch_project(tmp_path)
    quiet = {"KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK"}  # only the project's .telemetry decides
    env = {key: value for key, value in os.environ.items() if key not in quiet}
    env["COLUMNS"] = "1000"  # no wrapped lines in the log
    result = kedro(project, "run", "--env=smoke", "--pipelines=ingest", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Warning" not in output, output  # UserWarning, DeprecationWarning, FutureWarning
    assert "anonymous usage data" not in output
    assert "Adroit" not in output  # gymnasium-robotics' notice about envs the project never uses
    assert "ingest aloha_sim_transfer_cube" in output  # the project's own progress stays
