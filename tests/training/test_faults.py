"""Fault injection on the training side: killed launchers and ranks, resumes, corrupt checkpoints
and bad parameters, each checked for what the user sees and what is kept (the data side:
tests/faults/test_data_faults.py)."""

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from kedro.io.core import DatasetError, Version
from training_set import DATASET, TINY, history

from drifting_kedro.cli import user_error
from drifting_kedro.datasets import TorchCheckpointDataset
from drifting_kedro.launch import LAUNCHER_PID_ENV
from drifting_kedro.pipelines.train import nodes
from drifting_kedro.tracking import MlflowRunLogger, RunEndedError
from drifting_kedro.training import checkpoint
from drifting_kedro.training.checkpoint import (
    CorruptCheckpointError,
    checksum_path,
    copy_checkpoint,
    load_checkpoint,
    load_run_checkpoint,
    save_checkpoint,
)
from drifting_kedro.training.config import TrainConfig, check_action_horizon
from drifting_kedro.training.train import main

PROJECT = Path(__file__).resolve().parents[2]
TRAIN_MODULE = "drifting_kedro.training.train"
CURVE_KEYS = ("train/loss", "train/drift/lambda_v", f"train/mse/{DATASET}", "train/grad_norm")
#################################################################################
#                                  Helpers                                      #
#################################################################################


def torchrun(config: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Two gloo ranks of the trainer under torchrun, output to `log`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    with log.open("a") as out:
        return subprocess.Popen(
            [*cmd, "-m", TRAIN_MODULE, "--config", str(config)],
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.005)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def ranks_of(agent: int) -> dict[int, int]:
    """rank -> pid of the trainer processes torchrun's agent started (read from /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except OSError:  # exited while listing
            continue
        rank = [item[5:] for item in environ if item.startswith(b"RANK=")]
        if parent == agent and rank:
            found[int(rank[0])] = int(stat.parent.name)
    return found


def alive(pid: int) -> bool:
    """Running; a zombie waiting to be reaped counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def reap(tmp_path):
    """Pids to SIGKILL at teardown if still running this test's code, so a failing test leaves
    no training behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(OSError):
            if str(tmp_path) in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def flip_bytes(path: Path, count: int = 64) -> None:
    """Invert `count` bytes in the middle of the file (inside the tensor data)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(255 - b for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


#################################################################################
#                (A) ranks never outlive their launcher                         #
#################################################################################


@pytest.mark.slow
def test_killing_the_torchrun_agent_stops_its_ranks_at_once(train_config, tmp_path, reap):
    config = train_config(max_steps=100_000, checkpoint_every=2)
    agent = torchrun(config, tmp_path / "torchrun.log")
    reap.append(agent.pid)
    wait_for(lambda: logged_steps(config.parent) >= 4, 300, "training to start")
    ranks = ranks_of(agent.pid)
    reap.extend(ranks.values())
    assert sorted(ranks) == [0, 1]

    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    wait_for(lambda: not any(map(alive, ranks.values())), 5, "the ranks to die with torchrun")
    before = snapshot(config.parent)
    time.sleep(2)
    assert snapshot(config.parent) == before  # nothing written after the kill
    assert load_checkpoint(config.parent / "checkpoints" / "last.pt")["step"] % 2 == 0


@pytest.mark.slow
def test_ranks_stop_when_the_process_that_ran_torchrun_is_gone(train_config, tmp_path, reap):
    launcher = subprocess.Popen(["sleep", "600"])  # stands in for the Kedro process
    config = train_config(max_steps=100_000, checkpoint_every=2)
    log = tmp_path / "torchrun.log"
    agent = torchrun(config, log, env={LAUNCHER_PID_ENV: str(launcher.pid)})
    reap.append(agent.pid)
    try:
        wait_for(lambda: logged_steps(config.parent) >= 4, 300, "training to start")
    finally:
        ranks = ranks_of(agent.pid)
        reap.extend(ranks.values())
        launcher.kill()
    launcher.wait()
    assert agent.wait(timeout=60) != 0
    wait_for(lambda: not any(map(alive, ranks.values())), 5, "the ranks to stop")
    assert f"the process that ran torchrun (pid {launcher.pid}) is gone" in log.read_text()
    before = snapshot(config.parent)
    time.sleep(1)
    assert snapshot(config.parent) == before


SLEEPER = """import os, pathlib, sys, time
pathlib.Path(sys.argv[1], f"rank{os.environ['RANK']}.pid").write_text(str(os.getpid()))
time.sleep(600)
"""
DRIVER = """import sys
from drifting_kedro.launch import LaunchConfig, run_torchrun
run_torchrun("sleeper", [sys.argv[1]], LaunchConfig(nproc_per_node=2))
"""


@pytest.mark.slow
def test_ctrl_c_in_the_launching_process_stops_torchrun_and_its_ranks(tmp_path, reap):
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reap.append(driver.pid)
    pid_files = [tmp_path / "rank0.pid", tmp_path / "rank1.pid"]
    wait_for(lambda: all(p.exists() and p.read_text() for p in pid_files), 120, "the ranks")
    ranks = [int(p.read_text()) for p in pid_files]
    (agent,) = map(int, Path(f"/proc/{driver.pid}/task/{driver.pid}/children").read_text().split())
    reap.extend([agent, *ranks])

    os.kill(driver.pid, signal.SIGINT)  # Ctrl-C reaches the Kedro process alone
    assert driver.wait(timeout=60) != 0
    wait_for(lambda: not any(map(alive, [agent, *ranks])), 15, "torchrun and its ranks to stop")


def test_the_trainer_never_logs_into_an_mlflow_run_that_has_ended(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("faults")).info.run_id
    metric_logger = MlflowRunLogger(run_id, uri)
    metric_logger.log_metrics({"train/loss": 1.0}, step=1)

    client.set_terminated(run_id, "FAILED")  # the Kedro session failed and closed its run
    with pytest.raises(RunEndedError, match=f"MLflow run {run_id} is FAILED, no longer RUNNING"):
        metric_logger.log_metrics({"train/loss": 0.5}, step=2)
    with pytest.raises(RunEndedError):
        metric_logger.log_params({"train.world_size": 2})
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1]
    assert "train.world_size" not in client.get_run(run_id).data.params


@pytest.mark.slow
def test_a_rank_killed_mid_run_resumes_onto_the_uninterrupted_curve(train_config, tmp_path, reap):
    fields = {"max_steps": 40, "checkpoint_every": 4, "batch_size": 8}
    reference = train_config(run_dir=str(tmp_path / "reference"), **fields)
    assert torchrun(reference, tmp_path / "reference.log").wait(timeout=600) == 0

    killed = train_config(run_dir=str(tmp_path / "killed"), **fields)
    agent = torchrun(killed, tmp_path / "killed.log")
    reap.append(agent.pid)
    wait_for(lambda: logged_steps(killed.parent) >= 10, 300, "ten steps")
    os.kill(ranks_of(agent.pid)[1], signal.SIGKILL)
    assert agent.wait(timeout=120) != 0
    assert not (killed.parent / "checkpoints" / "final.pt").exists(), "ended before the kill"
    assert torchrun(killed, tmp_path / "resumed.log").wait(timeout=600) == 0

    expected, resumed = history(reference.parent), history(killed.parent)
    assert [row["step"] for row in resumed] == list(range(1, 41))
    for want, got in zip(expected, resumed, strict=True):
        for key in CURVE_KEYS:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (got["step"], key)


#################################################################################
#                 (B) a resume continues the run as it was configured           #
#################################################################################


@pytest.fixture
def train_node(training_set, tmp_path, monkeypatch):
    """The train node on the small training set, its torchrun replaced by the trainer in this
    process; returns `run(trainer=..., launch=..., norm_stats=..., **train)` and the launches."""
    launches: list[str] = []

    def in_process(module, args, launch, env=None):
        launches.append(args[1])
        main(Path(args[1]))

    monkeypatch.setattr(nodes, "run_torchrun", in_process)
    table = pd.read_parquet(training_set["table"])
    stats = json.loads(Path(training_set["stats"]).read_text())

    def run(trainer=None, launch=None, norm_stats=None, **train) -> dict:
        return nodes.train_policy(
            unified_actions=table,
            norm_stats=norm_stats or stats,
            vlm_features={DATASET: training_set["features"]},
            frames={},
            train_options={
                "runs_dir": str(tmp_path / "runs"),
                "resume_from": "",
                "trainer": {**TINY, "max_steps": 8, "checkpoint_every": 2, **(trainer or {})},
                **train,
            },
            launch_options={"nproc_per_node": 1, **(launch or {})},
        )

    return run, launches


RUN_FILES = ("config.json", "norm_stats.json", "train_table.parquet")


def test_a_resume_continues_the_run_as_it_was_configured(train_node, tmp_path, caplog):
    run, _ = train_node
    with pytest.raises(FileNotFoundError, match="continue it with train.resume_from="):
        run(trainer={"max_steps": 8, "stop_after_step": 4})  # as if killed after step 4
    (run_dir,) = (tmp_path / "runs").iterdir()
    files = {name: (run_dir / name).read_bytes() for name in RUN_FILES}

    caplog.set_level(logging.INFO)
    other_stats = {**json.loads(files["norm_stats.json"]), "fetch_push": {}}
    # Resumed with the conf's values: a max_steps below the checkpoint, another log_every, a
    # model shape of another run, and statistics the catalog recomputed since.
    state = run(
        trainer={"max_steps": 2, "log_every": 2, "action_horizon": 4},
        norm_stats=other_stats,
        resume_from=str(run_dir),
    )
    assert state["step"] == 8
    assert {name: (run_dir / name).read_bytes() for name in RUN_FILES} == files
    for line in (
        "train.trainer.max_steps=2 is not above the checkpoint's step 4: keeping the run's 8",
        "train.trainer.action_horizon=4 would reshape the run's model: keeping 8",
        "train.trainer.log_every: 1 -> 2",
        "train.trainer.stop_after_step: 4 -> None",
        "The catalog's norm_stats differ from the run's: it keeps",
    ):
        assert line in caplog.text
    assert [row["step"] for row in history(run_dir)] == [1, 2, 3, 4, 6, 8]
    resumed = TrainConfig.load(run_dir / "resume_config.json")
    assert (resumed.max_steps, resumed.log_every, resumed.action_horizon) == (8, 2, 8)


def test_resuming_a_finished_run_trains_nothing_and_returns_its_final_checkpoint(
    train_node, tmp_path, caplog
):
    run, launches = train_node
    run(trainer={"max_steps": 4})
    (run_dir,) = (tmp_path / "runs").iterdir()
    launches.clear()

    caplog.set_level(logging.INFO)
    assert run(trainer={"max_steps": 3}, resume_from=str(run_dir))["step"] == 4
    assert launches == []
    assert "is at step 4 and train.trainer.max_steps=4: nothing to train" in caplog.text

    assert run(trainer={"max_steps": 6}, resume_from=str(run_dir))["step"] == 6  # extended
    assert "train.trainer.max_steps: 4 -> 6" in caplog.text


def test_resuming_a_folder_that_is_not_a_run_names_it(train_node, tmp_path):
    run, _ = train_node
    with pytest.raises(FileNotFoundError, match=r"resume_from=.*nowhere has no train_table"):
        run(resume_from=str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in RUN_FILES[1:]:
        (empty / name).write_text("{}")
    with pytest.raises(FileNotFoundError, match="holds no checkpoints/last.pt to resume from"):
        run(resume_from=str(empty))


#################################################################################
#              (C) checkpoints: atomic, verified, fallen back from              #
#################################################################################


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "checkpoints" / "last.pt"
    state = {"optimizer": {"exp_avg": torch.arange(4096, dtype=torch.float32)}, "step": 8}
    save_checkpoint(state, path)
    return path


def test_a_truncated_checkpoint_is_an_error_naming_the_file(saved):
    truncate(saved)
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint {saved} is corrupt"):
        load_checkpoint(saved)
    checksum_path(saved).unlink()  # written before checksums: the reader itself refuses it
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint {saved} cannot be read"):
        load_checkpoint(saved)


def test_flipped_bytes_fail_the_checksum_that_torch_load_would_miss(saved):
    flip_bytes(saved)
    with pytest.raises(CorruptCheckpointError, match=rf"{saved} is corrupt: its sha256"):
        load_checkpoint(saved)
    changed = torch.load(saved, weights_only=True)["optimizer"]["exp_avg"]  # loads silently
    assert not torch.equal(changed, torch.arange(4096, dtype=torch.float32))


def test_a_checkpoint_without_checksum_still_loads_with_a_warning(saved, caplog):
    checksum_path(saved).unlink()
    assert load_checkpoint(saved)["step"] == 8
    assert f"Checkpoint {saved} has no {checksum_path(saved)}" in caplog.text


def test_a_write_interrupted_at_any_point_leaves_a_checkpoint_that_verifies(saved, monkeypatch):
    new = {"optimizer": {"exp_avg": torch.zeros(4096)}, "step": 9}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    def half_written(state, path):
        Path(path).write_bytes(b"PK\x03\x04")
        fail()

    with monkeypatch.context() as patch:  # dies while serializing
        patch.setattr(torch, "save", half_written)
        with pytest.raises(OSError):
            save_checkpoint(new, saved)
    assert load_checkpoint(saved)["step"] == 8
    assert not list(saved.parent.glob(".*tmp*"))

    real_replace = os.replace

    def replace(source, target):
        return fail() if Path(target) == saved else real_replace(source, target)

    with monkeypatch.context() as patch:  # dies before the rename, sidecar already updated
        patch.setattr(checkpoint.os, "replace", replace)
        with pytest.raises(OSError):
            save_checkpoint(new, saved)
    assert load_checkpoint(saved)["step"] == 8

    real = checkpoint._write_atomic
    calls = []

    def second_fails(*args):
        calls.append(args)
        return fail() if len(calls) == 2 else real(*args)

    with monkeypatch.context() as patch:  # dies after the rename, before the final sidecar
        patch.setattr(checkpoint, "_write_atomic", second_fails)
        with pytest.raises(OSError):
            save_checkpoint(new, saved)
    assert load_checkpoint(saved)["step"] == 9


def test_a_copy_of_a_corrupt_checkpoint_is_refused(saved):
    flip_bytes(saved)
    kept = saved.with_name("step_8.pt")
    with pytest.raises(CorruptCheckpointError, match=rf"{saved} is corrupt"):
        copy_checkpoint(saved, kept)
    assert not kept.exists()


def test_resume_falls_back_to_the_newest_intact_checkpoint(train_config, tmp_path, caplog):
    fields = {"max_steps": 12, "checkpoint_every": 4, "keep_every": 4}
    reference = train_config(run_dir=str(tmp_path / "reference"), **fields)
    main(reference)
    broken = train_config(run_dir=str(tmp_path / "broken"), stop_after_step=10, **fields)
    main(broken)
    folder = broken.parent / "checkpoints"
    assert {p.name for p in folder.glob("*.pt")} == {"last.pt", "step_4.pt", "step_8.pt"}
    truncate(folder / "last.pt")  # step 8
    flip_bytes(folder / "step_8.pt")
    killed_writer = subprocess.Popen([sys.executable, "-c", "pass"])
    killed_writer.wait()
    left_by_killed = folder / f".last.pt.{killed_writer.pid}-0000.tmp"
    being_written = folder / f".last.pt.{os.getpid()}-0000.tmp"  # a writer still running
    left_by_killed.write_bytes(b"left by a killed write")
    being_written.write_bytes(b"half written")

    caplog.set_level(logging.WARNING)
    main(train_config(run_dir=str(tmp_path / "broken"), **fields))
    assert f"checkpoint {folder / 'last.pt'} cannot be read, it is truncated" in caplog.text
    assert f"checkpoint {folder / 'step_8.pt'} is corrupt" in caplog.text
    assert f"Resuming from {folder / 'step_4.pt'} (step 4) instead" in caplog.text
    assert not left_by_killed.exists() and being_written.exists()
    expected, resumed = history(reference.parent), history(broken.parent)
    assert [row["step"] for row in resumed] == list(range(1, 13))
    for want, got in zip(expected, resumed, strict=True):
        for key in CURVE_KEYS:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (got["step"], key)


def test_a_run_with_no_intact_checkpoint_is_an_error_naming_each_file(train_config):
    config = train_config(max_steps=8, stop_after_step=4)
    main(config)
    truncate(config.parent / "checkpoints" / "last.pt")
    with pytest.raises(CorruptCheckpointError, match=r"no intact checkpoint in .*last\.pt"):
        main(train_config(max_steps=8))


def test_corrupt_checkpoints_in_the_catalog_and_evaluation_name_the_file(saved, tmp_path):
    dataset = TorchCheckpointDataset(str(tmp_path / "policy.pt"), version=Version(None, None))
    dataset.save({"step": 1, "weights": torch.ones(4096)})
    (written,) = (tmp_path / "policy.pt").glob("*/policy.pt")
    flip_bytes(written)
    with pytest.raises(DatasetError) as error:
        dataset.load()
    assert str(written) in str(user_error(error.value))  # what `kedro run` prints

    kept = saved.with_name("step_8.pt")
    copy_checkpoint(saved, kept)
    flip_bytes(kept)
    with pytest.raises(CorruptCheckpointError, match=rf"{kept} is corrupt"):
        load_run_checkpoint(kept)  # what evaluate.checkpoint=<kept> loads


#################################################################################
#              (D) parameters are checked before torchrun starts                #
#################################################################################


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trainer": {"lr": -1}}, "train.trainer.lr must be > 0, got -1"),
        (
            {"trainer": {"max_stepz": 300}},
            "train.trainer.max_stepz is not an option; did you mean train.trainer.max_steps?",
        ),
        (
            {"resume_form": "data/06_models/runs/x"},
            "train.resume_form is not an option; did you mean train.resume_from?",
        ),
        ({"trainer": {"lr": "fast"}}, "train.trainer.lr must be a number, got 'fast'"),
        ({"trainer": {"max_steps": 1.5}}, "train.trainer.max_steps must be an integer, got 1.5"),
        (
            {"trainer": {"model_overrides": {"hiden_size": 8}}},
            "did you mean train.trainer.model_overrides.hidden_size?",
        ),
        ({"trainer": {"run_dir": "elsewhere"}}, "train.trainer.run_dir is set by the train node"),
        (
            {"trainer": {"action_horizon": 40}},
            "train.trainer.action_horizon=40 is longer than every training episode (longest per "
            f"dataset: {DATASET} (30 frames))",
        ),
        (
            {"launch": {"nproc_per_nod": 2}},
            "train_launch.nproc_per_nod is not an option; "
            "did you mean train_launch.nproc_per_node?",
        ),
    ],
)
def test_bad_parameters_fail_before_torchrun_naming_the_option(
    train_node, tmp_path, options, message
):
    run, launches = train_node
    with pytest.raises(ValueError) as error:
        run(**options)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert launches == [] and not (tmp_path / "runs").exists()


def test_an_action_horizon_longer_than_some_datasets_episodes_is_a_warning_naming_them():
    assert check_action_horizon({"aloha": 400, "fetch_push": 50}, 50) is None
    warning = check_action_horizon({"aloha": 400, "fetch_push": 40, "fetch_reach": 30}, 50)
    assert "fetch_push (40 frames), fetch_reach (30 frames)" in warning
    assert "aloha" not in warning
    with pytest.raises(ValueError, match=r"lower it to at most 40"):
        check_action_horizon({"fetch_push": 40, "fetch_reach": 30}, 50)


#################################################################################
#                 End to end: `kedro run` in a scratch project                  #
#################################################################################


@pytest.fixture(scope="module")
def train_project(tmp_path_factory, training_set) -> Path:
    """A scratch copy of the project whose smoke catalog already holds the train inputs."""
    root = tmp_path_factory.mktemp("train_project")
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # the package itself comes from the installed project
    version = "2026-01-01T00.00.00.000Z"
    features = f"data/04_feature/smoke/vlm_features/{version}/vlm_features"  # versioned folder
    targets = {
        training_set["table"]: "data/04_feature/smoke/unified_actions.parquet",
        training_set[
            "stats"
        ]: f"data/05_model_input/smoke/norm_stats.json/{version}/norm_stats.json",
        training_set["features"]: f"{features}/{DATASET}.h5",
    }
    for source, target in targets.items():
        (root / target).parent.mkdir(parents=True)
        shutil.copy(source, root / target)
    (root / features / "manifest.json").write_text(json.dumps({"datasets": [DATASET]}))
    (root / "data/02_intermediate/smoke").mkdir(parents=True)
    (root / "data/02_intermediate/smoke/frames_manifest.json").write_text("{}")
    return root


def kedro_train(project: Path, params: str) -> subprocess.CompletedProcess:
    command = ["run", "--env=smoke", "--pipeline=train", f"--params={params}"]
    return subprocess.run(
        [sys.executable, "-m", "kedro", *command],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"},
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("train.trainer.lr=-1", "Error: train.trainer.lr must be > 0, got -1\n"),
        ("train.resume_form=x", "did you mean train.resume_from?\n"),
    ],
)
def test_bad_parameters_on_the_command_line_are_one_message(train_project, params, message):
    result = kedro_train(train_project, params)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Launching" not in result.stdout + result.stderr  # torchrun never started


@pytest.mark.slow
def test_resume_from_the_command_line_keeps_the_runs_own_configuration(train_project):
    launch = "train_launch.nproc_per_node=1"
    first = kedro_train(
        train_project,
        f"train.trainer.max_steps=30,train.trainer.stop_after_step=25,"
        f"train.trainer.checkpoint_every=5,{launch}",
    )
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert "continue it with train.resume_from=" in first.stderr
    (run_dir,) = (train_project / "data/06_models/smoke/runs").iterdir()
    files = {name: (run_dir / name).read_bytes() for name in RUN_FILES}

    result = kedro_train(train_project, f"train.resume_from={run_dir},{launch}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "max_steps=20 is not above the checkpoint's step 25: keeping the run's 30" in out
    assert "train.trainer.checkpoint_every: 5 -> 10" in out
    assert {name: (run_dir / name).read_bytes() for name in RUN_FILES} == files
    (final,) = (train_project / "data/06_models/smoke/policy_checkpoint.pt").glob("*/*.pt")
    assert load_checkpoint(final)["step"] == 30
