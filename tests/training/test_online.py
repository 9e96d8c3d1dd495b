"""Online-VLM training: qwen3vl-tiny-random encodes frame-store images in the step, staged LoRA."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from training_set import DATASET, history

from drifting_kedro.features.backbone import build_backbone
from drifting_kedro.features.frames import FrameStore, FrameStoreWriter
from drifting_kedro.normalization import DatasetStats
from drifting_kedro.sources.base import Episode
from drifting_kedro.training.checkpoint import load_checkpoint
from drifting_kedro.training.config import TrainConfig
from drifting_kedro.training.data import (
    PolicySamples,
    StepBatchSampler,
    collate_samples,
    sample_weights,
)
from drifting_kedro.training.online import (
    apply_lora,
    backbone_from_checkpoint,
    build_online_vlm,
    encode_batch,
    lora_state,
)
from drifting_kedro.training.train import build_trainer, main, setup_distributed

BACKBONE = "qwen3vl-tiny-random"
LORA = {"lora_rank": 4, "lora_alpha": 8.0, "lora_layers": 1}


@pytest.fixture(scope="module")
def frame_store(training_set, tmp_path_factory) -> str:
    """32x32 random views of every (episode, frame) of the training table."""
    table = pd.read_parquet(training_set["table"])
    path = tmp_path_factory.mktemp("frames") / "frames.h5"
    rng = np.random.default_rng(0)
    with FrameStoreWriter(path, DATASET, ["top"], image_size=32) as writer:
        for episode, part in table.groupby("episode_index"):
            length = len(part)
            writer.add_episode(
                Episode(
                    dataset=DATASET,
                    episode_index=int(episode),
                    language="transfer the cube",
                    fps=50.0,
                    action=np.zeros((length, 14), np.float32),
                    state=np.zeros((length, 14), np.float32),
                    images={"top": rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8)},
                )
            )
    return str(path)


@pytest.fixture
def online_config(train_config, frame_store):
    def make(**fields) -> Path:
        online = {
            "online_backbone": BACKBONE,
            "frame_paths": {DATASET: frame_store},
            "feature_paths": {},
            **LORA,
        }
        return train_config(**{**online, **fields})

    return make


@pytest.fixture
def process_group():
    """A one-process gloo group, as `main` makes, for stepping a trainer in this process."""
    setup_distributed()
    yield
    dist.destroy_process_group()


def online_trainer(config_path: Path):
    """The trainer and batch iterator `train` builds, for stepping by hand."""
    cfg = TrainConfig.load(config_path)
    stats = DatasetStats.from_dict(json.loads(Path(cfg.stats_path).read_text()))
    samples = PolicySamples(
        pd.read_parquet(cfg.table_path),
        stats,
        cfg.feature_paths,
        cfg.action_horizon,
        frame_paths=cfg.frame_paths,
    )
    trainer = build_trainer(cfg, samples, stats, torch.device("cpu"), 0)
    sampler = StepBatchSampler(
        sample_weights(samples, {}),
        batch_size=cfg.batch_size,
        accum_steps=1,
        start_step=0,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        rank=0,
    )
    batches = iter(DataLoader(samples, batch_sampler=sampler, collate_fn=collate_samples))
    return trainer, samples, batches


def snapshot(named) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in named}


def test_lora_is_frozen_before_the_start_step_then_trains_base_weights_never(
    online_config, process_group
):
    trainer, samples, batches = online_trainer(online_config(lora_start_step=2, max_steps=5))
    online = trainer.online
    base = snapshot((n, p) for n, p in online.backbone.named_parameters() if ".lora_" not in n)
    initial_lora = snapshot(enumerate(online.lora))
    initial_policy = snapshot(trainer.model.named_parameters())
    batch = collate_samples([samples[0], samples[1]])
    assert not online.encode(batch, step=1)["vlm_tokens"].requires_grad
    assert online.encode(batch, step=2)["vlm_tokens"].requires_grad

    for step in range(5):
        before = snapshot(enumerate(online.lora))
        stats = trainer.train_step(batches, step)
        assert np.isfinite(stats["train/loss"])
        changed = [not torch.equal(before[i], p) for i, p in enumerate(online.lora)]
        if step < 2:
            assert not any(changed) and not online.optimizer.state, step
            assert "train/lora_grad_norm" not in stats
        else:
            assert any(changed) and stats["train/lora_grad_norm"] > 0, step
    # lora_B starts at zero, so lora_A moves from the second LoRA step on: all have moved now
    assert all(not torch.equal(initial_lora[i], p) for i, p in enumerate(online.lora))
    for name, p in online.backbone.named_parameters():
        if ".lora_" not in name:
            assert torch.equal(base[name], p), name
    moved = [not torch.equal(initial_policy[n], p) for n, p in trainer.model.named_parameters()]
    assert sum(moved) > len(moved) // 2


def test_checkpoint_round_trip_restores_lora_for_resume_and_evaluation(
    online_config, process_group, tmp_path
):
    config = online_config(lora_start_step=1, max_steps=4)
    trainer, _, batches = online_trainer(config)
    for step in range(3):
        trainer.train_step(batches, step)
    path = tmp_path / "last.pt"
    trainer.save(3, path)
    trained = lora_state(trainer.online.backbone)

    resumed, _, _ = online_trainer(config)
    fresh = lora_state(resumed.online.backbone)
    assert any(not torch.equal(fresh[k], v) for k, v in trained.items())
    assert resumed.load(path) == 3
    assert all(torch.equal(v, lora_state(resumed.online.backbone)[k]) for k, v in trained.items())
    assert resumed.online.optimizer.state_dict()["state"].keys() == {0, 1, 2, 3}
    assert resumed.online.scheduler.last_epoch == 3

    checkpoint = load_checkpoint(path)  # weights_only
    assert checkpoint["online_vlm"]["replica_divergence"] == 0.0
    evaluated = backbone_from_checkpoint(checkpoint)
    images = torch.randint(0, 256, (2, 1, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        want = trainer.online.backbone.encode(images, ["a", "b"])
        got = evaluated.encode(images, ["a", "b"])
    torch.testing.assert_close(got.tokens, want.tokens)


def test_main_trains_online_and_logs_the_lora_stage(online_config):
    config = online_config(lora_start_step=3, max_steps=6, checkpoint_every=6)
    state = torch.load(main(config), weights_only=True)
    assert state["step"] == 6
    assert state["online_vlm"]["backbone"] == BACKBONE
    assert state["model_config"]["vlm_hidden_size"] == 64  # the backbone's, not a store's
    rows = history(config.parent)
    assert ["train/lora_grad_norm" in row for row in rows] == [False] * 3 + [True] * 3
    assert rows[-1]["train/lora_lr"] == pytest.approx(rows[-1]["train/lr"] * 0.1)


def test_online_lora_on_small_real_is_a_clear_error(online_config):
    cfg = TrainConfig.load(online_config(online_backbone="small-real"))
    with pytest.raises(ValueError, match="online LoRA needs .*qwen3vl or paligemma2.*small-real"):
        build_online_vlm(cfg, torch.device("cpu"), lambda step: 1.0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frame_paths": {}}, "needs train.frame_paths"),
        ({"online_backbone": "qwen9"}, "online_backbone='qwen9' is not one of"),
        ({"lora_rank": 0}, "lora_rank must be >= 1"),
        ({"lora_lr_ratio": 0.0}, "lora_lr_ratio must be > 0"),
    ],
)
def test_online_config_errors_name_the_field(online_config, fields, message):
    with pytest.raises(ValueError, match=message):
        online_config(**fields)


def test_lora_targets_the_last_layers_q_v_of_both_hf_backbones():
    for name in (BACKBONE, "paligemma2-tiny-random"):
        backbone = build_backbone(name)
        apply_lora(backbone, rank=2, alpha=4.0, layers=1)
        adapted = {n.split(".lora_")[0] for n in lora_state(backbone)}
        assert adapted == {
            f"model.model.language_model.layers.1.self_attn.{proj}" for proj in ("q_proj", "v_proj")
        }, name


def test_encode_batch_groups_views_and_restores_the_batch_order():
    backbone = build_backbone(BACKBONE)
    rng = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (v, 3, 32, 32), dtype=torch.uint8, generator=rng)
              for v in (1, 2, 1)]  # fmt: skip
    texts = ["one", "two views", "three"]
    with torch.no_grad():
        batch = encode_batch(backbone, images, texts)
        for j, (image, text) in enumerate(zip(images, texts, strict=True)):
            alone = backbone.encode(image[None], [text])
            n = alone.tokens.shape[1]
            torch.testing.assert_close(batch["vlm_tokens"][j, :n], alone.tokens[0])
            assert batch["vlm_mask"][j].sum() == n and not batch["vlm_mask"][j, n:].any()
            assert torch.equal(batch["token_camera"][j, :n], alone.token_camera[0])


def test_frame_rows_names_missing_frames(frame_store):
    store = FrameStore(frame_store)
    assert store.indices_for(np.array([1, 0]), np.array([0, 2])).tolist() == [30, 2]
    with pytest.raises(KeyError, match=rf"{DATASET}.*\(7, 0\)"):
        store.indices_for(np.array([0, 7]), np.array([0, 0]))


@pytest.mark.slow
def test_two_process_online_lora_stays_identical_across_ranks(online_config):
    config = online_config(lora_start_step=2, max_steps=6, checkpoint_every=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    subprocess.run(
        [*command, "-m", "drifting_kedro.training.train", "--config", str(config)],
        check=True,
        capture_output=True,
        env=env,
    )
    state = torch.load(config.parent / "checkpoints" / "final.pt", weights_only=True)
    assert state["replica_divergence"] == 0.0
    assert state["online_vlm"]["replica_divergence"] == 0.0
    initial = build_backbone(BACKBONE)
    apply_lora(initial, rank=4, alpha=8.0, layers=1)
    moved = [
        not torch.equal(v, state["online_vlm"]["lora"][k]) for k, v in lora_state(initial).items()
    ]
    assert all(moved)
