"""Precompute throughput (samples/s) of every backbone that builds offline, in one run.

A synthetic frame store (``--episodes`` x ``--frames`` frames, ``--views`` views at ``--size``)
is encoded by ``run_precompute`` end to end (frame reads, encode, HDF5 writes, merge) with each
backbone; small-real's encode alone is also timed per frame at batch 1 and at ``--batch-size``.
CPU, 1 torch thread. Usage: python benchmarks/precompute.py [--frames 128]
"""
# ruff: noqa: T201  (benchmarks print their figures)

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from drifting_kedro.features.backbone import available_backbones, build_backbone  # noqa: E402
from drifting_kedro.features.frames import FrameStoreWriter  # noqa: E402
from drifting_kedro.features.precompute import run_precompute  # noqa: E402
from drifting_kedro.sources.base import Episode  # noqa: E402


def make_frames(path: Path, episodes: int, frames: int, views: int, size: int) -> None:
    rng = np.random.default_rng(0)
    cameras = [f"cam{v}" for v in range(views)]
    with FrameStoreWriter(path, "bench", cameras, size) as writer:
        for e in range(episodes):
            images = {c: rng.integers(0, 256, (frames, size, size, 3), np.uint8) for c in cameras}
            zeros = np.zeros((frames, 2), np.float32)
            writer.add_episode(Episode("bench", e, f"task {e % 2}", 50.0, zeros, zeros, images))


def encode_ms_per_frame(backbone, batch: int, views: int, size: int, reps: int) -> float:
    images = torch.randint(0, 256, (batch, views, 3, size, size), dtype=torch.uint8)
    texts = ["pick up the cube"] * batch
    with torch.no_grad():
        backbone.encode(images, texts)  # warm-up (and the sentence cache)
        t0 = time.perf_counter()
        for _ in range(reps):
            backbone.encode(images, texts)
    return (time.perf_counter() - t0) / (reps * batch) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = args.episodes * args.frames
    print(
        f"{n} frames, {args.views} view(s) at {args.size}x{args.size}, batch "
        f"{args.batch_size}, 1 torch thread"
    )
    small = build_backbone("small-real")
    for batch in (1, args.batch_size):
        ms = encode_ms_per_frame(small, batch, args.views, args.size, reps=max(1, 64 // batch))
        print(f"  small-real encode only, batch {batch:3d}: {ms:6.2f} ms/frame")
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp, "frames.h5")
        make_frames(frames, args.episodes, args.frames, args.views, args.size)
        for name in available_backbones():
            try:
                build_backbone(name)
            except Exception as err:  # noqa: BLE001 - report what is not available offline
                print(f"  {name:24s} not available offline: {str(err).splitlines()[0][:90]}")
                continue
            summary = run_precompute(
                frames, Path(tmp, f"{name}.h5"), name, args.batch_size, progress=False
            )
            print(
                f"  {name:24s} precompute {summary['samples_per_s']:8.1f} samples/s "
                f"({summary['samples']} in {summary['seconds']:.1f} s, "
                f"H={summary['hidden_size']}, random_init={summary['random_init']})"
            )


if __name__ == "__main__":
    main()
