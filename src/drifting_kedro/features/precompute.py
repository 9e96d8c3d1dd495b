"""Precompute backbone features of every frame of a frame store into one feature store.

Each rank encodes a disjoint contiguous shard into its own part file ``<out>.rank{r}.h5``,
committing after every batch, so a killed run resumes where it stopped. When every part is
complete the parts are merged, in sample order, into the single file ``out`` and deleted:

- one process (``world_size == 1``): merged at the end of :func:`run_precompute`;
- under torchrun (a process group is initialised): ranks meet at a gloo barrier, rank 0 merges;
- ranks started some other way: call :func:`merge_parts` once they are all done.

    torchrun --nproc-per-node 2 -m drifting_kedro.features.precompute \\
        --frames data/frames.h5 --out data/features.h5 --backbone small-real
"""

import argparse
import json
import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from drifting_kedro.features.backbone import Backbone, build_backbone
from drifting_kedro.features.frames import FrameStore
from drifting_kedro.features.store import (
    IDENTITY_KEYS,
    FeatureStoreWriter,
    merge_feature_stores,
    read_attrs,
)

logger = logging.getLogger(__name__)

_SHARD_KEYS = ("shard_start", "shard_stop", "world_size")


def shard_range(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous, disjoint ``[start, stop)`` of rank ``rank``; shards differ by at most one."""
    return num_samples * rank // world_size, num_samples * (rank + 1) // world_size


def part_path(out_path: str | os.PathLike, rank: int) -> Path:
    """``features.h5`` -> ``features.rank{rank}.h5``."""
    out = Path(out_path)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def _final_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: attrs[k] for k in (*IDENTITY_KEYS, "source_version")}


def run_precompute(
    frame_store_path: str | os.PathLike,
    out_path: str | os.PathLike,
    backbone_name: str,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: str = "cpu",
    backbone_options: dict[str, Any] | None = None,
    source_version: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode this rank's shard of the frame store (resuming its part file), then merge.

    ``source_version`` defaults to the frame store's content hash. Returns a summary: samples
    encoded by this call, seconds, samples_per_s, the shard, whether ``out`` is now complete.
    """
    if batch_size <= 0:
        raise ValueError(f"precompute: batch_size={batch_size} must be > 0")
    if not 0 <= rank < world_size:
        raise ValueError(f"precompute: rank={rank} must be in [0, world_size={world_size})")
    frames = FrameStore(frame_store_path)
    backbone = build_backbone(backbone_name, device=device, **(backbone_options or {}))
    backbone.eval()
    attrs = _feature_identity(frames, backbone, source_version)
    start, stop = shard_range(len(frames), rank, world_size)
    summary = {"rank": rank, "world_size": world_size, "shard": (start, stop), **attrs}
    out_path = Path(out_path)
    if _is_complete(out_path, attrs):
        logger.info("precompute: %s is already complete, nothing to do", out_path)
        return {**summary, "samples": 0, "seconds": 0.0, "samples_per_s": 0.0, "merged": True}

    shard_attrs = {**attrs, "shard_start": start, "shard_stop": stop, "world_size": world_size}
    writer = FeatureStoreWriter(part_path(out_path, rank), shard_attrs)
    encoded, seconds = _encode_shard(
        frames, backbone, writer, (start, stop), rank=rank, batch_size=batch_size, progress=progress
    )
    frames.close()
    merged = _merge_when_done(out_path, rank, world_size)
    rate = encoded / seconds if seconds > 0 else 0.0
    logger.info(
        "precompute rank %d: %d samples in %.1f s (%.1f samples/s)", rank, encoded, seconds, rate
    )
    return {
        **summary,
        "samples": encoded,
        "seconds": seconds,
        "samples_per_s": rate,
        "merged": merged,
    }


def _feature_identity(
    frames: FrameStore, backbone: Backbone, source_version: str | None
) -> dict[str, Any]:
    """What the features are of and from: a part or output file is reused only if they match."""
    return {
        "dataset": frames.dataset,
        "backbone": backbone.name,
        "config_hash": backbone.config_hash(),
        "random_init": bool(backbone.random_init),
        "hidden_size": int(backbone.hidden_size),
        "source_version": source_version or frames.version,
    }


def _is_complete(out_path: Path, attrs: dict[str, Any]) -> bool:
    """Whether ``out_path`` already holds these features; other features there are an error."""
    if not out_path.exists():
        return False
    stored = read_attrs(out_path)
    if stored.get("complete") and _final_attrs(stored) == attrs:
        return True
    raise ValueError(
        f"precompute: {out_path} exists but holds other features ({_final_attrs(stored)}); "
        "delete it or choose another output path"
    )


def _encode_shard(
    frames: FrameStore,
    backbone: Backbone,
    writer: FeatureStoreWriter,
    shard: tuple[int, int],
    *,
    rank: int,
    batch_size: int,
    progress: bool,
) -> tuple[int, float]:
    """Encode the shard's frames the part file does not hold yet; (samples encoded, seconds).

    The part file commits after every batch, so an error leaves it closed and resumable.
    """
    start, stop = shard
    done = writer.num_samples
    if done:
        logger.info("precompute rank %d: resuming after %d of %d samples", rank, done, stop - start)
    t0 = time.perf_counter()
    desc = f"{backbone.name} rank {rank}"
    progress_bar = tqdm(
        total=stop - start, initial=done, unit="sample", disable=not progress, desc=desc
    )
    with writer, progress_bar, torch.no_grad():
        for lo in range(start + done, stop, batch_size):
            idx = np.arange(lo, min(lo + batch_size, stop))
            output = backbone.encode(frames.images_batch(idx), frames.instructions(idx))
            writer.append(output, frames.episode_index[idx], frames.frame_index[idx])
            progress_bar.update(len(idx))
        encoded = writer.num_samples - done
        writer.close(complete=True)
    return encoded, time.perf_counter() - t0


def _merge_when_done(out_path: Path, rank: int, world_size: int) -> bool:
    """Merge the parts once every rank is done; whether ``out_path`` is now complete.

    Ranks started without a process group cannot wait for each other: they leave merging to
    :func:`merge_parts`.
    """
    if world_size == 1:
        merge_parts(out_path, 1)
        return True
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        if rank == 0:
            merge_parts(out_path, world_size)
        dist.barrier()
        return True
    logger.info(
        "precompute rank %d done; call merge_parts(%s, %d) when all ranks are",
        rank,
        out_path,
        world_size,
    )
    return False


def merge_parts(out_path: str | os.PathLike, world_size: int) -> int:
    """Merge the complete part files of ``world_size`` ranks into ``out_path``; delete them."""
    parts = [part_path(out_path, r) for r in range(world_size)]
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"merge {out_path}: part files {missing} are missing; run "
            "those ranks (they resume) before merging"
        )
    attrs = [read_attrs(p) for p in parts]
    expected_start = 0
    for path, a in zip(parts, attrs, strict=True):
        if a.get("world_size") != world_size or a.get("shard_start") != expected_start:
            raise ValueError(
                f"merge {out_path}: {path} covers samples [{a.get('shard_start')}, "
                f"{a.get('shard_stop')}) of a {a.get('world_size')}-rank run, not the next "
                f"shard of a {world_size}-rank run; delete the parts and re-run"
            )
        done = a["num_samples"] == a["shard_stop"] - a["shard_start"]
        if not (a.get("complete") and done):
            raise ValueError(
                f"merge {out_path}: {path} is incomplete ({a['num_samples']} of "
                f"{a['shard_stop'] - a['shard_start']} samples); resume that rank first"
            )
        expected_start = a["shard_stop"]
    n = merge_feature_stores(parts, out_path, _final_attrs(attrs[0]))
    for p in parts:
        p.unlink()
    logger.info("merged %d part(s) into %s: %d samples", world_size, out_path, n)
    return n


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"backbone option {text!r} must be KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI; under torchrun, RANK / WORLD_SIZE come from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", required=True, help="frame store (HDF5) to encode")
    parser.add_argument("--out", required=True, help="feature store (HDF5) to write")
    parser.add_argument("--backbone", required=True, help="registered backbone name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--source-version", default=None)
    parser.add_argument(
        "--option",
        type=_parse_option,
        action="append",
        default=[],
        help="backbone option KEY=VALUE (JSON values), repeatable",
    )
    parser.add_argument("--barrier-timeout-minutes", type=float, default=24 * 60)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        timeout = timedelta(minutes=args.barrier_timeout_minutes)
        dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timeout)
    try:
        summary = run_precompute(
            args.frames,
            args.out,
            args.backbone,
            args.batch_size,
            rank=rank,
            world_size=world_size,
            # "cuda" means this rank's own GPU under torchrun.
            device=f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
            if args.device == "cuda"
            else args.device,
            backbone_options=dict(args.option),
            source_version=args.source_version,
            progress=not args.no_progress,
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    logger.info("precompute summary: %s", summary)
    return summary


if __name__ == "__main__":
    main()
