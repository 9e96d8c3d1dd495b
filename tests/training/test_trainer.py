"""The torchrun trainer on a small real-format training set: checkpoints, resume, DDP, learning."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_set import DATASET, history, write_training_set

from drifting_kedro.action_space import get_spec
from drifting_kedro.training.checkpoint import load_run_checkpoint
from drifting_kedro.training.config import TrainConfig
from drifting_kedro.training.train import main, warmup_cosine

TRAIN_MODULE = "drifting_kedro.training.train"
CURVE_KEYS = ("train/loss", "train/drift/lambda_v", f"train/mse/{DATASET}", "train/grad_norm")


def trainer_process(config: Path, *torchrun: str) -> list[str]:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", *torchrun] if torchrun else [sys.executable]
    )
    return [*launcher, "-m", TRAIN_MODULE, "--config", str(config)]


def test_final_checkpoint_loads_weights_only(train_config):
    final = main(train_config())
    state = torch.load(final, weights_only=True)
    assert state["step"] == 12
    assert set(state) >= {"model", "ema", "optimizer", "scheduler", "rng", "model_config"}
    assert state["train_config"]["head"] == "drifting"


def test_kept_checkpoints_are_the_run_at_their_step_with_its_statistics(train_config):
    config = train_config(max_steps=12, checkpoint_every=5, keep_every=4)
    final = torch.load(main(config), weights_only=True)
    kept = {int(path.stem[5:]): path.name for path in config.parent.glob("checkpoints/step_*.pt")}
    assert sorted(kept) == [4, 8, 12]

    stats = json.loads(Path(final["train_config"]["stats_path"]).read_text())
    rows = {DATASET: json.loads(json.dumps(dataclasses.asdict(get_spec(DATASET))))}
    states = {}
    for name in ("last.pt", "final.pt", *kept.values()):
        state = torch.load(config.parent / "checkpoints" / name, weights_only=True)
        assert state["norm_stats"] == stats, name
        assert state["datasets"] == rows, name
    for step in (4, 8, 12):
        states[step] = load_run_checkpoint(config.parent / "checkpoints" / kept[step])
        assert states[step]["step"] == step
    assert all(torch.equal(final["ema"][k], v) for k, v in states[12]["ema"].items())
    assert not all(torch.equal(states[4]["ema"][k], v) for k, v in states[8]["ema"].items())


def test_a_finished_run_resumed_with_more_steps_follows_the_longer_schedule(train_config):
    main(train_config(max_steps=8))
    extended = train_config(max_steps=16)  # the same run folder, a larger budget
    assert torch.load(main(extended), weights_only=True)["step"] == 16

    rows = history(extended.parent)
    assert [row["step"] for row in rows] == list(range(1, 17))
    cfg = TrainConfig.load(extended)
    assert rows[7]["train/lr"] == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    for row in rows[8:]:
        multiplier = warmup_cosine(row["step"], cfg.warmup_steps, 16, cfg.min_lr_ratio)
        assert row["train/lr"] == pytest.approx(cfg.lr * multiplier)
    assert rows[8]["train/lr"] > 5 * rows[7]["train/lr"]


def test_a_missing_kept_checkpoint_names_the_option_that_keeps_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"step_400\.pt .*train\.trainer\.keep_every"):
        load_run_checkpoint(tmp_path / "checkpoints" / "step_400.pt")


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_comparison_heads_train_through_the_same_trainer(train_config, head):
    overrides = {"hidden_size": 32, "depth": 2, "num_heads": 2}  # noise_dim = action_dim
    config = train_config(head=head, max_steps=4, model_overrides=overrides)
    state = torch.load(main(config), weights_only=True)
    assert state["model_config"]["head"] == head
    assert state["model_config"]["noise_dim"] == 128


@pytest.mark.slow
def test_sigkilled_run_resumes_onto_the_uninterrupted_curve(train_config, tmp_path):
    fields = {"max_steps": 24, "checkpoint_every": 8, "batch_size": 8}
    reference = train_config(run_dir=str(tmp_path / "reference"), **fields)
    subprocess.run(trainer_process(reference), check=True, capture_output=True)

    killed = train_config(run_dir=str(tmp_path / "killed"), **fields)
    process = subprocess.Popen(
        trainer_process(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = killed.parent / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 12:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    subprocess.run(trainer_process(killed), check=True, capture_output=True)

    expected, resumed = history(reference.parent), history(killed.parent)
    assert [row["step"] for row in resumed] == list(range(1, 25))
    for want, got in zip(expected, resumed, strict=True):
        for key in CURVE_KEYS:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (
                got["step"],
                key,
            )


@pytest.mark.slow
def test_two_process_ddp_keeps_replicas_identical(train_config):
    config = train_config(max_steps=8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        trainer_process(config, "--standalone", "--nproc-per-node=2"),
        check=True,
        capture_output=True,
        env=env,
    )
    state = torch.load(config.parent / "checkpoints" / "final.pt", weights_only=True)
    assert state["step"] == 8
    assert state["replica_divergence"] == 0.0


@pytest.mark.slow
def test_tiny_policy_overfits_a_handful_of_observations(tmp_path):
    paths = write_training_set(tmp_path, episodes=1, length=4)
    config = TrainConfig(
        run_dir=str(tmp_path / "run"),
        table_path=paths["table"],
        stats_path=paths["stats"],
        feature_paths={DATASET: paths["features"]},
        action_horizon=4,
        batch_size=4,
        generations=8,
        max_steps=300,
        warmup_steps=10,
        lr=2e-3,
        log_every=10,
        checkpoint_every=300,
        ema_decay=0.0,
        model_overrides={"hidden_size": 64, "depth": 2, "num_heads": 2, "noise_dim": 8},
    )
    Path(config.run_dir).mkdir()
    config.save(Path(config.run_dir) / "config.json")
    main(Path(config.run_dir) / "config.json")
    curve = history(Path(config.run_dir))
    first, last = curve[0][f"train/mse/{DATASET}"], curve[-1][f"train/mse/{DATASET}"]
    assert last < 0.05 * first, (first, last)


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_checkpoints_full_weights(train_config, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    curves = {}
    for strategy in ("ddp", "fsdp"):
        config = train_config(run_dir=str(tmp_path / strategy), strategy=strategy, max_steps=6)
        subprocess.run(
            trainer_process(config, "--standalone", "--nproc-per-node=2"),
            check=True,
            capture_output=True,
            env=env,
        )
        curves[strategy] = [row["train/loss"] for row in history(config.parent)]
        state = torch.load(config.parent / "checkpoints" / "final.pt", weights_only=True)
        reference = state["model"]["final_layer.linear.weight"]
        assert reference.shape == state["ema"]["final_layer.linear.weight"].shape
        assert reference.shape[1] == 32  # full (gathered) weights, not a rank's shard
    # FSDP's reduce-scatter and DDP's all-reduce round differently; with each group's step
    # weighted by its own scale the curves part by ~6e-4 of the loss in 6 steps (measured).
    assert curves["fsdp"] == pytest.approx(curves["ddp"], rel=2e-3)


@pytest.mark.parametrize(
    "fields",
    [
        {"loss_mode": "queue", "queue_size": 64},
        {"loss_mode": "hybrid", "hybrid_mse_weight": 0.5},
        {"cfg_alpha_max": 4.0, "grad_accum_steps": 2},
    ],
)
def test_loss_options_train_and_checkpoint(train_config, fields):
    state = torch.load(
        main(train_config(max_steps=4, checkpoint_every=2, **fields)), weights_only=True
    )
    assert state["step"] == 4
    if fields.get("loss_mode") == "queue":
        assert state["queue"]  # the queue is saved for resume


def test_state_noise_changes_training_and_zero_noise_changes_nothing(train_config, tmp_path):
    def curve(name: str, **fields) -> list[float]:
        config = train_config(run_dir=str(tmp_path / name), max_steps=4, **fields)
        main(config)
        return [row[f"train/mse/{DATASET}"] for row in history(config.parent)]

    plain = curve("plain")
    assert curve("zero", state_noise={DATASET: 0.0}) == plain
    assert curve("noisy", state_noise={DATASET: 1.0}) != plain
