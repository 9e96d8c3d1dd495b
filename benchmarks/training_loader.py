"""Training samples/s: the real trainer step fed by the feature store vs by in-memory batches.

Writes a training set in the project's formats (unified table, statistics, a merged feature
store that readers memory-map) to a temp dir, builds the trainer as `train` does (one-process
gloo group, DDP wrapper), and times the same optimizer steps fed three ways, interleaved in
rounds in one run: batches pre-collated in memory (the loaders' first-round batches; every
batch has the same shapes), and `PolicySamples` + `StepBatchSampler`
through a DataLoader with 0 and 2 workers. The loader overhead is the extra time per step
relative to the in-memory feed (goal: < 10%), in wall time and in this process's CPU time (which
a busy machine disturbs less; it leaves out the workers' own CPU).

    python benchmarks/training_loader.py --steps 20 --rounds 3 --block 5
"""
# ruff: noqa: T201  (benchmarks print their figures)

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from drifting_kedro.action_space import state_to_unified, to_unified
from drifting_kedro.features.backbone import BackboneOutput
from drifting_kedro.features.store import FeatureStoreWriter, merge_feature_stores, read_attrs
from drifting_kedro.normalization import DatasetStats, compute_stats
from drifting_kedro.training.config import TrainConfig
from drifting_kedro.training.data import (
    PolicySamples,
    StepBatchSampler,
    collate_samples,
    sample_weights,
)
from drifting_kedro.training.train import build_trainer, setup_distributed

DATASET = "aloha_sim_transfer_cube"


def write_training_set(root: Path, episodes: int, length: int, tokens: int, hidden: int) -> dict:
    """Random-walk 14-D trajectories and random features of `tokens` x `hidden` per frame."""
    rng = np.random.default_rng(0)
    native = np.cumsum(rng.normal(scale=0.05, size=(episodes, length, 14)), axis=1)
    native = native.reshape(-1, 14).astype(np.float32)
    episode = np.repeat(np.arange(episodes), length)
    frame = np.tile(np.arange(length), episodes)
    actions, states = to_unified(native, DATASET), state_to_unified(native, DATASET)
    table = pd.DataFrame(
        {
            "dataset": DATASET,
            "episode_index": episode,
            "frame_index": frame,
            "split": "train",
            "action": list(actions),
            "state": list(states),
        }
    )
    table.to_parquet(root / "table.parquet")
    stats = compute_stats(actions, states, table["dataset"].to_numpy())
    (root / "stats.json").write_text(json.dumps(stats.to_dict()))
    attrs = {
        "dataset": DATASET,
        "backbone": "bench",
        "config_hash": "0",
        "random_init": True,
        "hidden_size": hidden,
        "source_version": "bench",
    }
    part = root / "features.part.h5"
    with FeatureStoreWriter(part, attrs) as writer:
        for lo in range(0, len(episode), 1000):
            hi = min(lo + 1000, len(episode))
            x = torch.from_numpy(rng.standard_normal((hi - lo, tokens, hidden), np.float32))
            output = BackboneOutput(
                x,
                torch.ones(hi - lo, tokens, dtype=torch.bool),
                x.mean(1),
                torch.zeros(hi - lo, tokens, dtype=torch.long),
            )
            writer.append(output, episode[lo:hi], frame[lo:hi])
        writer.close(complete=True)
    merge_feature_stores([part], root / "features.h5", read_attrs(part))  # as precompute leaves it
    part.unlink()
    return {
        "table_path": str(root / "table.parquet"),
        "stats_path": str(root / "stats.json"),
        "feature_paths": {DATASET: str(root / "features.h5")},
    }


def time_steps(trainer, batches, steps: range) -> float:
    start = time.perf_counter()
    for step in steps:
        trainer.train_step(batches, step)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=64, help="VLM tokens per sample")
    parser.add_argument("--hidden", type=int, default=256, help="VLM hidden size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model-size", default="tiny")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per feed per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=5, help="steps per feed before rotating")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_training_set(Path(tmp), args.episodes, args.length, args.tokens, args.hidden)
        cfg = TrainConfig(
            run_dir=tmp,
            model_size=args.model_size,
            batch_size=args.batch_size,
            max_steps=10**6,
            warmup_steps=10,
            **paths,
        )
        setup_distributed()
        stats = DatasetStats.from_dict(json.loads(Path(cfg.stats_path).read_text()))
        samples = PolicySamples(
            pd.read_parquet(cfg.table_path), stats, cfg.feature_paths, cfg.action_horizon
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
        loaders = {
            workers: iter(
                DataLoader(
                    samples,
                    batch_sampler=sampler,
                    collate_fn=collate_samples,
                    num_workers=workers,
                    persistent_workers=workers > 0,
                )
            )
            for workers in (0, 2)
        }
        per_round, warmup = args.steps, 3
        # the in-memory feed: the batches the loaders draw in their first round, collated once
        memory = [
            collate_samples([samples[i] for i in idx])
            for idx in itertools.islice(iter(sampler), warmup, warmup + per_round)
        ]
        for feed in (iter(memory), loaders[0], loaders[2]):  # warm up: workers, allocator
            time_steps(trainer, feed, range(warmup))

        # blocks of a few steps, feeds rotating, so load from other processes hits all alike
        feeds = {
            "in-memory tensors": itertools.cycle(memory),
            "loader, 0 workers": loaders[0],
            "loader, 2 workers": loaders[2],
        }
        wall = dict.fromkeys(feeds, 0.0)
        cpu = dict.fromkeys(feeds, 0.0)  # this process only: robust to a busy machine
        for _ in range(args.rounds * per_round // args.block):
            for name, feed in feeds.items():
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                time_steps(trainer, feed, range(args.block))
                wall[name] += time.perf_counter() - wall_start
                cpu[name] += time.process_time() - cpu_start
        loader_only = {}
        for workers, loader in loaders.items():
            start = time.perf_counter()
            for _ in range(per_round):
                next(loader)
            loader_only[workers] = (time.perf_counter() - start) / per_round
        dist.destroy_process_group()

    steps_timed = args.rounds * per_round // args.block * args.block
    print(
        f"{len(samples)} samples ({args.tokens} tokens x {args.hidden} fp16 features), policy "
        f"{args.model_size} ({trainer.model.num_parameters() / 1e6:.2f}M), batch "
        f"{cfg.batch_size} x G={cfg.generations}, {steps_timed} steps per feed"
    )
    print(f"{'feed':<20} {'samples/s':>10} {'overhead':>9} {'cpu overhead':>13}")
    for name in wall:
        overhead = [
            f"{100 * (times[name] / times['in-memory tensors'] - 1):+.1f}%" for times in (wall, cpu)
        ]
        rate = steps_timed * cfg.batch_size / wall[name]
        print(f"{name:<20} {rate:>10.1f} {overhead[0]:>9} {overhead[1]:>13}")
    step_seconds = wall["in-memory tensors"] / steps_timed
    for workers, seconds in loader_only.items():
        print(
            f"loader alone, {workers} workers: {cfg.batch_size / seconds:.0f} samples/s, "
            f"{1000 * seconds:.1f} ms per batch = {100 * seconds / step_seconds:.1f}% of a step"
        )


if __name__ == "__main__":
    main()
