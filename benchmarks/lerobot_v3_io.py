# ruff: noqa: T201  (benchmark scripts print their figures)
"""LeRobot v3 I/O throughput: write, sequential ingest (`iter_episodes`), random frame reads.

    python benchmarks/lerobot_v3_io.py [--episodes 20] [--length 200] [--size 96] [--reads 500]

Writes a dataset of smooth synthetic video (one 96x96 camera, 14-D action/state) in a temporary
directory, then times the three access patterns in the same run so their ratio is comparable.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from drifting_kedro.sources.lerobot_v3 import LeRobotV3Writer, open_dataset


def synthetic_episode(rng: np.random.Generator, length: int, size: int) -> dict[str, np.ndarray]:
    """A moving bright square over a gradient: compressible like rendered sim frames."""
    frames = np.zeros((length, size, size, 3), dtype=np.uint8)
    frames[...] = np.linspace(40, 120, size, dtype=np.uint8)[None, :, None, None]
    for t in range(length):
        x = int((size - 16) * (0.5 + 0.5 * np.sin(t / 15)))
        frames[t, size // 3 : size // 3 + 16, x : x + 16] = (220, 60, 60)
    return {
        "action": rng.normal(size=(length, 14)).astype(np.float32),
        "observation.state": rng.normal(size=(length, 14)).astype(np.float32),
        "observation.images.top": frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    features = {
        "action": {"dtype": "float32", "shape": [14], "names": None},
        "observation.state": {"dtype": "float32", "shape": [14], "names": None},
        "observation.images.top": {
            "dtype": "video",
            "shape": [args.size, args.size, 3],
            "names": ["height", "width", "channels"],
        },
    }
    rng = np.random.default_rng(0)
    episodes = [synthetic_episode(rng, args.length, args.size) for _ in range(args.episodes)]
    total = args.episodes * args.length

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        start = time.perf_counter()
        with LeRobotV3Writer(root, "bench/io", fps=50, features=features) as writer:
            for frames in episodes:
                writer.add_episode(frames, "transfer the cube")
        write_s = time.perf_counter() - start
        video_mb = sum(p.stat().st_size for p in root.rglob("*.mp4")) / 1024**2
        raw_mb = total * args.size * args.size * 3 / 1024**2

        dataset = open_dataset(root)
        start = time.perf_counter()
        decoded = sum(e.images["observation.images.top"].shape[0] for e in dataset.iter_episodes())
        ingest_s = time.perf_counter() - start
        assert decoded == total

        indices = rng.integers(0, total, args.reads)
        dataset = open_dataset(root)  # cold caches for random access
        start = time.perf_counter()
        for index in indices:
            dataset.frame(int(index), "observation.images.top")
        random_s = time.perf_counter() - start

    print(
        f"dataset: {args.episodes} episodes x {args.length} frames, {args.size}x{args.size} video"
    )
    print(f"video: {video_mb:.2f} MB on disk for {raw_mb:.1f} MB raw ({raw_mb / video_mb:.0f}x)")
    print(f"write (encode + parquet + stats): {total / write_s:8.0f} frames/s  ({write_s:.2f} s)")
    print(
        f"iter_episodes, all frames decoded: {total / ingest_s:8.0f} frames/s  ({ingest_s:.2f} s)"
    )
    reads_per_s = args.reads / random_s
    print(f"frame(index) at random indices:    {reads_per_s:8.0f} frames/s  ({random_s:.2f} s)")
    print(f"sequential / random throughput:    {(total / ingest_s) / reads_per_s:8.1f}x")


if __name__ == "__main__":
    main()
