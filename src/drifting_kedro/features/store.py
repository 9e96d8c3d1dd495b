"""The feature store: one HDF5 file per (dataset, backbone), flat contiguous arrays.

    tokens         fp16  [total_tokens, H]   real tokens of every sample, back to back
    token_camera   int8  [total_tokens]      view index, -1 for language
    offsets        int64 [N + 1]             sample i owns tokens[offsets[i]:offsets[i+1]]
    pooled         fp16  [N, H]
    episode_index  int64 [N]
    frame_index    int64 [N]
    attrs: format, dataset, backbone, config_hash, random_init, hidden_size, source_version,
           num_samples, num_tokens (the committed counters), complete

Not one group per sample (the seeds' layout): a read is three slices of flat arrays instead of
a walk through a million-entry group index. Writes are resumable: the writer's arrays are
chunked and growable, the counters are committed (and flushed) after each batch's data, and a
writer reopening the file truncates anything past them, so a killed run continues without
duplicates. The final store (:func:`merge_feature_stores`) is written once with contiguous,
uncompressed arrays, which each reading process memory-maps: a random read is then a few
microseconds of numpy slicing rather than HDF5's per-call overhead.
"""

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from drifting_kedro.features.backbone import LANGUAGE_CAMERA, BackboneOutput
from drifting_kedro.features.frames import find_rows

logger = logging.getLogger(__name__)

FEATURE_STORE_FORMAT = "drifting-kedro/features/v1"
IDENTITY_KEYS = ("dataset", "backbone", "config_hash", "random_init", "hidden_size")
_CHUNK_BYTES = 64 * 1024  # token chunk size: small enough that a random read touches one chunk
_COPY_SAMPLES = 4096  # samples copied per step when merging, to bound memory
_READ_KEYS = ("tokens", "token_camera", "pooled")  # what __getitem__ reads from disk


def _attr(value: Any) -> Any:
    """h5py attrs come back as numpy scalars; compare them as plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {key: _attr(value) for key, value in f.attrs.items()}


class FeatureStoreWriter:
    """Append batches of backbone outputs; reopening an existing file resumes after its last
    committed sample, after checking it was written by the same backbone on the same frames.

    ``attrs`` must hold the IDENTITY_KEYS and ``source_version``; any further keys (e.g. a
    shard's range) are recorded and must match on resume too.
    """

    def __init__(self, path: str | os.PathLike, attrs: dict[str, Any]):
        missing = [k for k in (*IDENTITY_KEYS, "source_version") if k not in attrs]
        if missing:
            raise ValueError(f"feature store {path}: attrs lack {missing}")
        self.path = Path(path)
        self.attrs = {k: _attr(v) for k, v in attrs.items()}
        h = int(self.attrs["hidden_size"])
        if self.path.exists():
            try:
                self._file = h5py.File(self.path, "r+")
            except OSError as err:  # HDF5 is not crash-safe while a write is in flight
                raise ValueError(
                    f"cannot resume {self.path}: HDF5 cannot open it ({err}); a run was "
                    "probably killed in the middle of a write. Delete it to recompute its samples"
                ) from err
            self._check_resume()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.path, "w")
            self._create(h)
        self.num_samples = int(self._file.attrs["num_samples"])
        self.num_tokens = int(self._file.attrs["num_tokens"])
        self._truncate()

    def _create(self, h: int) -> None:
        f = self._file
        rows = max(1, _CHUNK_BYTES // (2 * h))
        f.create_dataset("tokens", (0, h), np.float16, maxshape=(None, h), chunks=(rows, h))
        f.create_dataset("token_camera", (0,), np.int8, maxshape=(None,), chunks=(65536,))
        f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(8192,))
        f.create_dataset("pooled", (0, h), np.float16, maxshape=(None, h), chunks=(rows, h))
        for key in ("episode_index", "frame_index"):
            f.create_dataset(key, (0,), np.int64, maxshape=(None,), chunks=(8192,))
        f.attrs.update(self.attrs)
        f.attrs.update(format=FEATURE_STORE_FORMAT, num_samples=0, num_tokens=0, complete=False)
        f.flush()

    def _check_resume(self) -> None:
        stored = {key: _attr(value) for key, value in self._file.attrs.items()}
        if stored.get("format") != FEATURE_STORE_FORMAT:
            self._file.close()
            raise ValueError(
                f"{self.path} exists but is not a feature store ({stored.get('format')!r}); "
                "delete it or choose another output path"
            )
        if stored.get("config_hash") != self.attrs["config_hash"]:
            self._file.close()
            raise ValueError(
                f"cannot resume {self.path}: it holds features of backbone "
                f"{stored.get('backbone')!r} with config hash {stored.get('config_hash')!r}, "
                f"this run's backbone {self.attrs['backbone']!r} has config hash "
                f"{self.attrs['config_hash']!r}; delete the file (and its .rank*.h5 parts) "
                "or write to another path"
            )
        diff = {k: (stored.get(k), v) for k, v in self.attrs.items() if stored.get(k) != v}
        if diff:
            self._file.close()
            raise ValueError(
                f"cannot resume {self.path}: attributes differ (stored, requested): {diff}; "
                "delete the file (and its .rank*.h5 parts) or write to another path"
            )

    def _truncate(self) -> None:
        """Drop anything written after the last commit (a run killed mid-batch)."""
        f, n, t = self._file, self.num_samples, self.num_tokens
        for key, size in (("tokens", t), ("token_camera", t), ("offsets", n + 1), ("pooled", n)):
            f[key].resize(size, axis=0)
        for key in ("episode_index", "frame_index"):
            f[key].resize(n, axis=0)

    def append(
        self, output: BackboneOutput, episode_index: np.ndarray, frame_index: np.ndarray
    ) -> None:
        """Write one batch (only masked-in tokens) and commit the counters."""
        b, _, h = output.tokens.shape
        if h != self.attrs["hidden_size"]:
            raise ValueError(
                f"{self.path}: batch hidden size {h} != store's {self.attrs['hidden_size']}"
            )
        if len(episode_index) != b or len(frame_index) != b:
            raise ValueError(
                f"{self.path}: {b} samples but {len(episode_index)} episode / "
                f"{len(frame_index)} frame indices"
            )
        mask = output.mask.detach().cpu().numpy().astype(bool)  # [B, L]
        padded = output.tokens.detach().cpu().to(torch.float16).numpy()  # [B, L, H]
        pooled = output.pooled.detach().cpu().to(torch.float16).numpy()  # [B, H]
        finite = np.isfinite(pooled).all(1) & (np.isfinite(padded).all(2) | ~mask).all(1)
        if not finite.all():
            bad = [(int(episode_index[j]), int(frame_index[j])) for j in np.flatnonzero(~finite)]
            raise ValueError(
                f"{self.path}: non-finite features (fp16 overflow or a broken backbone) for "
                f"(episode, frame) {bad[:5]}; nothing of this batch was written"
            )
        tokens = padded[mask]  # [T, H]
        cameras = output.token_camera.detach().cpu().numpy()[mask].astype(np.int8)  # [T]
        offsets = self.num_tokens + np.cumsum(mask.sum(1), dtype=np.int64)  # [B]
        n, t = self.num_samples, self.num_tokens
        f = self._file
        for key, start, values in (
            ("tokens", t, tokens),
            ("token_camera", t, cameras),
            ("offsets", n + 1, offsets),
            ("pooled", n, pooled),
            ("episode_index", n, np.asarray(episode_index, np.int64)),
            ("frame_index", n, np.asarray(frame_index, np.int64)),
        ):
            f[key].resize(start + len(values), axis=0)
            f[key][start:] = values
        f.flush()  # data first, then the counters that make it visible
        self.num_samples, self.num_tokens = n + len(pooled), t + len(tokens)
        # appending to a finished store makes it unfinished until close(complete=True)
        f.attrs.update(num_samples=self.num_samples, num_tokens=self.num_tokens, complete=False)
        f.flush()

    def close(self, complete: bool = False) -> None:
        """Close; ``complete=True`` marks the store finished (readers of training need that)."""
        if self._file is None:
            return
        if complete:
            self._file.attrs["complete"] = True
        self._file.close()
        self._file = None

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeatureStore:
    """Random-access reader. Picklable: each process (DataLoader worker) opens its own handle."""

    def __init__(self, path: str | os.PathLike, require_complete: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"feature store {self.path} does not exist; run precompute")
        with h5py.File(self.path, "r") as f:
            self.attrs = {key: _attr(value) for key, value in f.attrs.items()}
            if self.attrs.get("format") != FEATURE_STORE_FORMAT:
                raise ValueError(f"{self.path} is not a feature store; re-run precompute")
            if require_complete and not self.attrs.get("complete"):
                raise ValueError(
                    f"feature store {self.path} is incomplete ({self.attrs.get('num_samples')} "
                    "samples committed); finish (resume) the precompute run first"
                )
            n = int(self.attrs["num_samples"])
            self.offsets = f["offsets"][: n + 1]  # [N+1] int64, kept in memory
            self.episode_index = f["episode_index"][:n]  # [N]
            self.frame_index = f["frame_index"][:n]  # [N]
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._arrays: dict[str, Any] | None = None

    dataset = property(lambda self: self.attrs["dataset"])
    backbone = property(lambda self: self.attrs["backbone"])
    config_hash = property(lambda self: self.attrs["config_hash"])
    random_init = property(lambda self: bool(self.attrs["random_init"]))
    hidden_size = property(lambda self: int(self.attrs["hidden_size"]))
    source_version = property(lambda self: self.attrs["source_version"])

    def __len__(self) -> int:
        return len(self.episode_index)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None, "_arrays": None}

    def _open(self) -> dict[str, Any]:
        """This process's arrays: memory maps of a merged store, else HDF5 dataset handles."""
        if self._arrays is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._file = h5py.File(self.path, "r", rdcc_nbytes=4 * 1024 * 1024)
            datasets = {key: self._file[key] for key in _READ_KEYS}
            maps = {key: _memory_map(self.path, ds) for key, ds in datasets.items()}
            if all(m is not None for m in maps.values()):
                self._file.close()
                self._file, self._arrays = None, maps
            else:  # a part file (chunked, growable): read through h5py
                self._arrays = datasets
        return self._arrays

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"feature store {self.path}: sample {i} out of range [0, {n})")
        i %= n
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        arrays = self._open()
        return {
            "tokens": torch.from_numpy(np.array(arrays["tokens"][start:stop])),  # [L, H] fp16
            "token_camera": torch.from_numpy(np.array(arrays["token_camera"][start:stop])),  # [L]
            "pooled": torch.from_numpy(np.array(arrays["pooled"][i])),  # [H] fp16
            "episode_index": int(self.episode_index[i]),
            "frame_index": int(self.frame_index[i]),
        }

    def indices_for(self, episode_index: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        """Sample indices of (episode, frame) pairs; a clear error for pairs not in the store."""
        where = f"feature store {self.path} (dataset {self.dataset!r})"
        return find_rows(self.episode_index, self.frame_index, episode_index, frame_index, where)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._arrays = None, None


def _memory_map(path: Path, ds: h5py.Dataset) -> np.memmap | None:
    """A read-only memory map of a contiguous, unfiltered, allocated dataset, else None."""
    layout = ds.id.get_create_plist().get_layout()
    offset = ds.id.get_offset()
    if layout != h5py.h5d.CONTIGUOUS or offset is None or ds.size == 0:
        return None
    mapped = np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape)
    # guard against any address translation we did not expect: compare one element
    last = (ds.shape[0] - 1,) + (slice(None),) * (ds.ndim - 1)
    return mapped if np.array_equal(mapped[last], ds[last]) else None


def collate_features(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad tokens to the batch's longest sample; float32 out, like a BackboneOutput.

    Returns tokens [B, L, H], mask [B, L] (True = real), token_camera [B, L] long (padding
    -1, masked out anyway), pooled [B, H], episode_index [B], frame_index [B].
    """
    b = len(samples)
    length = max(s["tokens"].shape[0] for s in samples)
    h = samples[0]["tokens"].shape[1]
    tokens = torch.zeros(b, length, h)
    mask = torch.zeros(b, length, dtype=torch.bool)
    cameras = torch.full((b, length), LANGUAGE_CAMERA, dtype=torch.long)
    for j, s in enumerate(samples):
        n = s["tokens"].shape[0]
        tokens[j, :n] = s["tokens"].float()
        mask[j, :n] = True
        cameras[j, :n] = s["token_camera"].long()
    return {
        "tokens": tokens,
        "mask": mask,
        "token_camera": cameras,
        "pooled": torch.stack([s["pooled"].float() for s in samples]),
        "episode_index": torch.tensor([s["episode_index"] for s in samples]),
        "frame_index": torch.tensor([s["frame_index"] for s in samples]),
    }


def merge_feature_stores(
    parts: list[str | os.PathLike], out_path: str | os.PathLike, attrs: dict[str, Any]
) -> int:
    """Concatenate complete part stores, in the order given, into one complete store.

    Written to ``<out>.merging`` and renamed, so a killed merge never leaves a bogus final file.
    Returns the number of samples.
    """
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".merging")
    tmp.unlink(missing_ok=True)
    stores = [FeatureStore(p) for p in parts]
    for path, store in zip(parts, stores, strict=True):
        for key in (*IDENTITY_KEYS, "source_version"):
            if store.attrs.get(key) != attrs[key]:
                raise ValueError(
                    f"cannot merge {path}: its {key} is {store.attrs.get(key)!r}, "
                    f"expected {attrs[key]!r}"
                )
    n = sum(len(store) for store in stores)
    t = sum(int(store.offsets[-1]) for store in stores)
    h = int(attrs["hidden_size"])
    with h5py.File(tmp, "w") as f:
        # fixed-size, unchunked: readers memory-map these
        out = {
            "tokens": f.create_dataset("tokens", (t, h), np.float16),
            "token_camera": f.create_dataset("token_camera", (t,), np.int8),
            "offsets": f.create_dataset("offsets", (n + 1,), np.int64),
            "pooled": f.create_dataset("pooled", (n, h), np.float16),
            "episode_index": f.create_dataset("episode_index", (n,), np.int64),
            "frame_index": f.create_dataset("frame_index", (n,), np.int64),
        }
        out["offsets"][0] = 0
        n0 = t0 = 0
        for store in stores:
            src = store._open()
            for lo in range(0, len(store), _COPY_SAMPLES):
                hi = min(lo + _COPY_SAMPLES, len(store))
                a, b = int(store.offsets[lo]), int(store.offsets[hi])
                n1, t1 = n0 + hi - lo, t0 + b - a
                out["tokens"][t0:t1] = src["tokens"][a:b]
                out["token_camera"][t0:t1] = src["token_camera"][a:b]
                out["offsets"][n0 + 1 : n1 + 1] = store.offsets[lo + 1 : hi + 1] - a + t0
                out["pooled"][n0:n1] = src["pooled"][lo:hi]
                out["episode_index"][n0:n1] = store.episode_index[lo:hi]
                out["frame_index"][n0:n1] = store.frame_index[lo:hi]
                n0, t0 = n1, t1
            store.close()
        f.attrs.update({k: _attr(v) for k, v in attrs.items()})
        f.attrs.update(format=FEATURE_STORE_FORMAT, num_samples=n, num_tokens=t, complete=True)
    os.replace(tmp, out_path)
    return n
