"""Random-read throughput: the flat feature store against one HDF5 group per sample (seeds).

All layouts hold the same N samples of L tokens x H fp16 (+ pooled [H]). The flat store is read
as precompute leaves it (merged: contiguous arrays, memory-mapped) and as a writer's part file
(chunked, read through h5py); the seeds' groups are written as their README describes (gzip
``hidden``, ``pooled``, attrs) and, for fairness, also uncompressed. The same random indices
are read from each, interleaved, in the same run; the files live in a temp dir.

    python benchmarks/feature_store.py --samples 100000
"""
# ruff: noqa: T201  (benchmarks print their figures)

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from drifting_kedro.features.backbone import BackboneOutput
from drifting_kedro.features.store import (
    FeatureStore,
    FeatureStoreWriter,
    merge_feature_stores,
    read_attrs,
)


def write_flat(path: Path, n: int, length: int, h: int, rng: np.random.Generator) -> None:
    attrs = {
        "dataset": "bench",
        "backbone": "bench",
        "config_hash": "0",
        "random_init": True,
        "hidden_size": h,
        "source_version": "0",
    }
    with FeatureStoreWriter(path, attrs) as writer:
        for lo in range(0, n, 1000):
            b = min(1000, n - lo)
            tokens = torch.from_numpy(rng.standard_normal((b, length, h), np.float32))
            output = BackboneOutput(
                tokens,
                torch.ones(b, length, dtype=torch.bool),
                tokens.mean(1),
                torch.zeros(b, length, dtype=torch.long),
            )
            idx = np.arange(lo, lo + b)
            writer.append(output, idx // 1000, idx % 1000)
        writer.close(complete=True)


def merge_flat(part: Path, path: Path) -> None:
    merge_feature_stores([part], path, read_attrs(part))


def write_groups(path: Path, n: int, length: int, h: int, *, rng, compression: str | None) -> None:
    with h5py.File(path, "w") as f:
        for i in range(n):
            hidden = rng.standard_normal((length, h), np.float32).astype(np.float16)
            group = f.create_group(f"sample_{i}")
            group.create_dataset("hidden", data=hidden, compression=compression)
            group.create_dataset("pooled", data=hidden.mean(0))
            group.attrs["sequence_length"] = length
            group.attrs["language"] = "pick up the cube"


def read_flat(path: Path, indices: np.ndarray) -> float:
    store = FeatureStore(path)
    t0 = time.perf_counter()
    for i in indices:
        item = store[int(i)]
        item["tokens"], item["pooled"]
    return len(indices) / (time.perf_counter() - t0)


def read_groups(path: Path, indices: np.ndarray) -> float:
    with h5py.File(path, "r") as f:
        t0 = time.perf_counter()
        for i in indices:
            group = f[f"sample_{int(i)}"]
            torch.from_numpy(group["hidden"][:]), torch.from_numpy(group["pooled"][:])
            group.attrs["sequence_length"]
        return len(indices) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, length, h = args.samples, args.tokens, args.hidden
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            "flat, writer part (h5py reads)": Path(tmp, "flat.rank0.h5"),
            "flat, merged (this store)": Path(tmp, "flat.h5"),
            "group per sample, gzip (seeds)": Path(tmp, "groups_gzip.h5"),
            "group per sample, no compression": Path(tmp, "groups_raw.h5"),
        }
        writers = [
            lambda p: write_flat(p, n, length, h, rng),
            lambda p: merge_flat(Path(tmp, "flat.rank0.h5"), p),
            lambda p: write_groups(p, n, length, h, rng=rng, compression="gzip"),
            lambda p: write_groups(p, n, length, h, rng=rng, compression=None),
        ]
        readers = [read_flat, read_flat, read_groups, read_groups]
        print(
            f"{n} samples x {length} tokens x {h} fp16; {args.reads} random reads, "
            f"best of {args.repeats}"
        )
        for (name, path), write in zip(paths.items(), writers, strict=True):
            t0 = time.perf_counter()
            write(path)
            print(
                f"  wrote {name}: {time.perf_counter() - t0:.1f} s, "
                f"{path.stat().st_size / 2**20:.0f} MiB"
            )
        rates = {}
        for repeat in range(args.repeats):  # interleaved, so load on the machine hits all alike
            indices = np.random.default_rng(repeat).integers(0, n, args.reads)
            for (name, path), read in zip(paths.items(), readers, strict=True):
                rates[name] = max(rates.get(name, 0.0), read(path, indices))
        flat = rates["flat, merged (this store)"]
        for name, rate in rates.items():
            print(f"  {name:34s} {rate:10.0f} samples/s   flat / this = {flat / rate:5.1f}x")


if __name__ == "__main__":
    main()
