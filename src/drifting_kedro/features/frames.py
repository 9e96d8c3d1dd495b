"""The frame store: every camera of every frame of one dataset, resized square, in one HDF5 file.

Ingest writes it; precompute, online training and the data videos read it. Layout:

    images          uint8 [N, V, S, S, 3]   one frame per chunk, lzf
    episode_index   int64 [N]
    frame_index     int64 [N]
    episodes/episode_index, episodes/start, episodes/length  int64 [E]
    episodes/language  str [E]
    attrs: dataset, cameras (JSON list), fps, image_size, content_hash, format

``content_hash`` is a running sha256 of everything written, so downstream stores can record
which frames they were computed from. The writer fills a hidden temporary file and renames it over
the store when sealed: a store being read is replaced whole, never truncated underneath, and two
runs writing one store cannot corrupt each other (the last to finish wins).
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from drifting_kedro.locking import remove_stale_temporaries, temporary_sibling
from drifting_kedro.sources.base import Episode

logger = logging.getLogger(__name__)

FRAME_STORE_FORMAT = "drifting-kedro/frames/v1"
_RESIZE_BATCH = 64  # frames resized at once, to bound memory on long episodes


def resize_square(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` -> ``[T, S, S, 3]`` with antialiased bilinear resizing.

    Non-square cameras are stretched to the square, not cropped, so nothing leaves the view.
    """
    if frames.shape[1:3] == (size, size):
        return frames
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for start in range(0, frames.shape[0], _RESIZE_BATCH):
        x = torch.from_numpy(frames[start : start + _RESIZE_BATCH]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[start : start + _RESIZE_BATCH] = x.numpy()
    return out


def find_rows(
    index_episode: np.ndarray,
    index_frame: np.ndarray,
    episode_index: np.ndarray,
    frame_index: np.ndarray,
    where: str,
) -> np.ndarray:
    """Rows of (episode, frame) pairs in a store indexed by `index_episode`/`index_frame`.

    Shared by the frame and feature stores; a clear KeyError names the first missing pairs.
    """
    index = pd.MultiIndex.from_arrays([index_episode, index_frame])
    rows = index.get_indexer(pd.MultiIndex.from_arrays([episode_index, frame_index]))
    if (rows < 0).any():
        pairs = [(int(episode_index[j]), int(frame_index[j])) for j in np.flatnonzero(rows < 0)[:5]]
        raise KeyError(f"{where} has no (episode, frame) {pairs}; re-run the stage that writes it")
    return rows


class FrameStoreWriter:
    """Append episodes of one dataset to a new frame store; ``close()`` seals it at ``path``.

    Until then the frames go to a temporary sibling, which ``abort()`` (or leaving a ``with``
    block on an error) deletes, keeping whatever store was at ``path`` before.
    """

    def __init__(self, path: str | os.PathLike, dataset: str, cameras: list[str], image_size: int):
        if not cameras:
            raise ValueError(
                f"frame store {path} for {dataset!r}: no camera to store (cameras is empty); "
                "the source must give every episode at least one RGB view"
            )
        if image_size <= 0:
            raise ValueError(f"frame store for {dataset!r}: image_size={image_size} must be > 0")
        self.path = Path(path)
        self.dataset, self.cameras, self.image_size = dataset, list(cameras), image_size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        self._temporary = temporary_sibling(self.path)
        self._file = h5py.File(self._temporary, "w")
        v, s = len(cameras), image_size
        self._images = self._file.create_dataset(
            "images",
            (0, v, s, s, 3),
            np.uint8,
            maxshape=(None, v, s, s, 3),
            chunks=(1, v, s, s, 3),
            compression="lzf",
        )
        self._index = {
            key: self._file.create_dataset(key, (0,), np.int64, maxshape=(None,), chunks=(4096,))
            for key in ("episode_index", "frame_index")
        }
        self._episodes: list[tuple[int, int, int, str]] = []  # (episode, start, length, language)
        self._fps: float | None = None
        self._hash = hashlib.sha256()
        self._count = 0

    def _check(self, episode: Episode) -> None:
        where = f"dataset {self.dataset!r} episode {episode.episode_index}"
        if episode.dataset != self.dataset:
            raise ValueError(f"{where}: belongs to dataset {episode.dataset!r}, not this store's")
        if any(e[0] == episode.episode_index for e in self._episodes):
            raise ValueError(f"{where}: already written; episode indices must be unique")
        if not isinstance(episode.language, str) or not episode.language.strip():
            raise ValueError(f"{where}: has no language instruction; fix the source")
        if self._fps is not None and episode.fps != self._fps:
            raise ValueError(f"{where}: fps {episode.fps} differs from {self._fps} of earlier ones")
        missing = [c for c in self.cameras if c not in episode.images]
        if missing:
            raise ValueError(f"{where}: missing cameras {missing} (has {sorted(episode.images)})")
        for camera in self.cameras:
            frames = episode.images[camera]
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
                raise ValueError(
                    f"{where} camera {camera!r}: images must be uint8 [T, H, W, 3], got "
                    f"{frames.dtype} {frames.shape}"
                )
            if frames.shape[0] != episode.length:
                raise ValueError(
                    f"{where} camera {camera!r}: {frames.shape[0]} frames for "
                    f"{episode.length} actions"
                )

    def add_episode(self, episode: Episode) -> None:
        """Resize every camera to S x S and append the episode's frames."""
        self._check(episode)
        t = episode.length
        views = [resize_square(episode.images[c], self.image_size) for c in self.cameras]
        images = np.stack(views, axis=1)  # [T, V, S, S, 3]
        start = self._count
        self._images.resize(start + t, axis=0)
        self._images[start:] = images
        episode_index = np.full(t, episode.episode_index, dtype=np.int64)
        frame_index = np.arange(t, dtype=np.int64)
        for key, values in (("episode_index", episode_index), ("frame_index", frame_index)):
            self._index[key].resize(start + t, axis=0)
            self._index[key][start:] = values
        for part in (images, episode_index, episode.language.encode()):
            self._hash.update(part.tobytes() if isinstance(part, np.ndarray) else part)
        self._episodes.append((episode.episode_index, start, t, episode.language))
        self._fps = episode.fps
        self._count += t

    def close(self) -> None:
        """Write the episode table and attributes; the store is readable only after this."""
        if self._file is None:
            return
        group = self._file.create_group("episodes")
        columns = list(zip(*self._episodes, strict=True)) if self._episodes else [[], [], [], []]
        for key, values in zip(("episode_index", "start", "length"), columns[:3], strict=True):
            group.create_dataset(key, data=np.asarray(values, dtype=np.int64))
        group.create_dataset("language", data=list(columns[3]), dtype=h5py.string_dtype())
        attrs = self._file.attrs
        attrs["format"] = FRAME_STORE_FORMAT
        attrs["dataset"] = self.dataset
        attrs["cameras"] = json.dumps(self.cameras)
        attrs["fps"] = float(self._fps or 0.0)
        attrs["image_size"] = self.image_size
        attrs["content_hash"] = self._hash.hexdigest()[:16]
        self._file.close()
        self._file = None
        os.replace(self._temporary, self.path)
        logger.info(
            "frame store %s: %d frames of %d episodes, %d views at %dx%d",
            self.path,
            self._count,
            len(self._episodes),
            len(self.cameras),
            self.image_size,
            self.image_size,
        )

    def __enter__(self) -> "FrameStoreWriter":
        return self

    def abort(self) -> None:
        """Drop what was written; the store at ``path`` (if any) stays as it was."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._temporary.unlink(missing_ok=True)

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class FrameStore:
    """Reader. Picklable: the HDF5 file opens lazily in whichever process reads it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"frame store {self.path} does not exist; run ingest first")
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("format") != FRAME_STORE_FORMAT:
                raise ValueError(
                    f"{self.path} is not a sealed frame store (format "
                    f"{f.attrs.get('format')!r}); re-run ingest"
                )
            self.dataset = str(f.attrs["dataset"])
            self.cameras: list[str] = json.loads(f.attrs["cameras"])
            self.fps = float(f.attrs["fps"])
            self.image_size = int(f.attrs["image_size"])
            self.version = str(f.attrs["content_hash"])
            self.episode_index = f["episode_index"][:]  # [N] int64
            self.frame_index = f["frame_index"][:]  # [N] int64
            episodes = f["episodes"]
            self._languages = dict(
                zip(
                    episodes["episode_index"][:].tolist(),
                    episodes["language"].asstr()[:].tolist(),
                    strict=True,
                )
            )
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.episode_index)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}

    def _images(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            file = h5py.File(self.path, "r")
            version = str(file.attrs.get("content_hash"))
            if version != self.version:  # the index read at open would not match these frames
                file.close()
                raise RuntimeError(
                    f"frame store {self.path} was rewritten since it was opened (content "
                    f"{self.version} -> {version}): another run re-ran ingest meanwhile; "
                    "re-run this stage"
                )
            self._file, self._pid = file, os.getpid()
        return self._file["images"]

    def _check_index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame store {self.path}: sample {i} out of range [0, {len(self)})")
        return i % len(self)

    def indices_for(self, episode_index: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        """Rows of (episode, frame) pairs; a clear error for frames ingest did not write."""
        where = f"frame store {self.path} (dataset {self.dataset!r})"
        return find_rows(self.episode_index, self.frame_index, episode_index, frame_index, where)

    def instruction(self, i: int) -> str:
        """Language instruction of sample ``i`` (its episode's)."""
        return self._languages[int(self.episode_index[self._check_index(i)])]

    def instructions(self, indices: np.ndarray | list[int]) -> list[str]:
        return [self.instruction(int(i)) for i in indices]

    def images(self, i: int) -> torch.Tensor:
        """uint8 ``[V, 3, S, S]`` of sample ``i``."""
        frame = self._images()[self._check_index(i)]  # [V, S, S, 3]
        return torch.from_numpy(frame).permute(0, 3, 1, 2).contiguous()

    def images_batch(self, indices: np.ndarray | list[int]) -> torch.Tensor:
        """uint8 ``[B, V, 3, S, S]`` in the order given (duplicates allowed)."""
        idx = np.asarray([self._check_index(int(i)) for i in indices], dtype=np.int64)
        if len(idx) == 0:
            v, s = len(self.cameras), self.image_size
            return torch.empty((0, v, 3, s, s), dtype=torch.uint8)
        unique, inverse = np.unique(idx, return_inverse=True)
        if unique[-1] - unique[0] + 1 == len(unique):  # contiguous: one slice read
            frames = self._images()[int(unique[0]) : int(unique[-1]) + 1]
        else:
            frames = self._images()[unique]  # h5py needs increasing unique indices
        return torch.from_numpy(frames[inverse]).permute(0, 1, 4, 2, 3).contiguous()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
