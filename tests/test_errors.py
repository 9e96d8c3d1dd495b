"""Errors a user can act on: `kedro run` prints one message naming the parameter or path."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("errors_project")
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package itself comes from the installed project
    missing = root / "conf" / "missing_root"
    missing.mkdir()
    (missing / "parameters_ingest.yml").write_text(
        "demonstrations: []\n"
        "ingest:\n"
        "  sources:\n"
        "    - {name: aloha, kind: lerobot_v3, root: /nonexistent/aloha}\n"
        "  frames_dir: data/02_intermediate/missing_root/frames\n"
    )
    return root


def kedro_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_one_clear_message(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    error = result.stderr[result.stderr.rindex("Error: ") :]
    for needle in needles:
        assert needle in error, error
    assert "Traceback" not in result.stderr + result.stdout
    assert "─────" not in result.stderr  # no rich traceback panel either


@pytest.mark.slow
def test_wrong_parameter_value_names_the_parameter(project):
    result = kedro_run(
        project, "--env=smoke", "--pipeline=ingest", "--params=ingest.on_error=maybe"
    )
    assert_one_clear_message(result, "ingest.on_error", "'raise' or 'skip'")


@pytest.mark.slow
def test_missing_dataset_root_names_the_path(project):
    result = kedro_run(project, "--env=missing_root", "--pipeline=ingest")
    assert_one_clear_message(result, "/nonexistent/aloha", "parameters_ingest.yml")


@pytest.mark.slow
def test_backbone_missing_offline_names_the_model(project):
    result = kedro_run(
        project, "--env=smoke", "--pipeline=precompute", "--params=features.backbone=qwen3vl"
    )
    assert_one_clear_message(result, "Qwen/Qwen3-VL-2B-Instruct", "model_path")


@pytest.mark.slow
def test_cuda_only_option_on_cpu_names_the_option(project):
    result = kedro_run(
        project, "--env=smoke", "--pipeline=precompute", "--params=features.device=cuda"
    )
    assert_one_clear_message(result, "features.device", "no CUDA device")


@pytest.mark.slow
def test_missing_input_names_the_pipeline_that_makes_it(project):
    result = kedro_run(project, "--pipeline=train")  # a fresh clone: precompute never ran
    assert_one_clear_message(
        result,
        "Missing input: ",
        "data/04_feature/unified_actions.parquet)",
        "do not exist yet: run `kedro run --pipeline=precompute` first",
    )
