"""The LeRobot v3.0 on-disk dataset format, written and read without the lerobot package.

lerobot cannot be installed beside this project's torch, yet its datasets are the lingua franca
of robot learning, so the writer reproduces what lerobot 0.6's LeRobotDataset records:

    meta/info.json                       codebase_version "v3.0", features, fps, totals, paths
    meta/stats.json                      per feature: min max mean std count q01 q10 q50 q90 q99
    meta/tasks.parquet                   index "task" (the task string), column task_index
    meta/episodes/chunk-XXX/file-YYY.parquet   one row per episode: offsets + per-episode stats
    data/chunk-XXX/file-YYY.parquet      many episodes per file, rolled over by size
    videos/<key>/chunk-XXX/file-YYY.mp4  many episodes per mp4 (libsvtav1, yuv420p, g=2, crf=30,
                                         preset 12, moov first once a second episode joins)

Read from huggingface/lerobot `src/lerobot/datasets/` (0.6.1: `dataset_writer.py`,
`dataset_metadata.py`, `io_utils.py`, `feature_utils.py`, `utils.py`, `compute_stats.py`,
`video_utils.py`) and checked against files lerobot 0.6.1 wrote from the same frames: with the
same pyarrow, pandas and PyAV builds, info.json, tasks.parquet, the episodes parquet and the mp4s
are identical bytes, stats.json holds identical values, and the data parquet differs only in
the `fingerprint` that `datasets` draws at random. docs/lerobot_format.md has the file-by-file
table and what differs with other library versions. The reader accepts these files, lerobot's
own, and v3.0 datasets written by earlier versions of this module.
"""

import hashlib
import importlib.util
import io
import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from drifting_kedro.sources.base import Episode
from drifting_kedro.sources.validation import (
    BAD_FRAME_INDEX,
    BAD_TIMESTAMPS,
    MISSING_LANGUAGE,
    ZERO_FRAMES,
    InvalidEpisodeError,
)
from drifting_kedro.sources.video import (
    DEFAULT_VCODEC,
    VideoDecodeError,
    VideoFrameReader,
    append_episode_video,
    encode_episode_video,
    encoder_settings,
    pick_video_codec,
    read_video_info,
    video_duration_s,
)

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNK_SIZE = 1000  # files per chunk directory
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
EPISODE_ROWS_PER_GROUP = 10  # lerobot's metadata_buffer_size: episode rows written together
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
IMAGE_FILE = "frame-{frame_index:06d}.png"
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
QUANTILE_BINS = 5000  # lerobot's histogram resolution for quantiles
ACTION_KEY = "action"
STATE_KEY = "observation.state"
VISUAL_DTYPES = ("video", "image")
_MB = 1024**2
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


class LeRobotFormatError(ValueError):
    """A LeRobot dataset on disk is missing, truncated or corrupt; the message says where."""


# --------------------------------------------------------------------------------------------
# Statistics (lerobot compute_stats layout)
# --------------------------------------------------------------------------------------------


def _histogram_quantile(cumulative: np.ndarray, edges: np.ndarray, target: float) -> float:
    """The value below which `target` of the histogrammed samples lie, interpolated in its bin."""
    position = int(np.searchsorted(cumulative, target))
    if position == 0:
        return edges[0]
    if position >= len(cumulative):
        return edges[-1]
    before = cumulative[position - 1]
    inside = cumulative[position] - before
    if inside == 0:
        return edges[position]
    fraction = (target - before) / inside
    return edges[position] + fraction * (edges[position + 1] - edges[position])


def _histogram(
    values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """`np.histogram(values, bins=edges, weights=weights)[0]` as float64, 9x faster on a
    few values: each value's bin looked up, the last bin holding its right edge too. Values
    outside the edges must weigh 0 (pixel levels absent from the image)."""
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(bins, weights=weights, minlength=len(edges) - 1).astype(np.float64)


def _feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-column stats of `values` [N, D], computed as lerobot's compute_stats does.

    lerobot's numbers rather than exact ones, so stats.json and the episode metadata hold what
    lerobot would write for the same frames: float32 accumulation for float32 data, variance
    as E[x²] - E[x]², quantiles read off a 5000-bin histogram spanning min..max per column.
    Fewer than 2 rows give plain numpy stats with every quantile set to the mean.
    """
    if len(values) < 2:
        mean = values.mean(axis=0)
        basic = {"min": values.min(axis=0), "max": values.max(axis=0), "mean": mean}
        basic |= {"std": values.std(axis=0), "count": np.array([len(values)])}
        return basic | {key: mean.copy() for key in QUANTILE_KEYS}
    # uint8 pixels: counts per level give the same min, max and histogram without binning
    # every pixel (half the time of an image's stats).
    levels = None
    if values.dtype == np.uint8:
        levels = np.stack([np.bincount(column, minlength=256) for column in values.T])
    values = values.astype(np.result_type(values.dtype, np.float32), copy=False)
    if levels is None:
        low, high = values.min(axis=0), values.max(axis=0)
    else:
        present = levels > 0
        low = present.argmax(axis=1).astype(values.dtype)
        high = (255 - present[:, ::-1].argmax(axis=1)).astype(values.dtype)
    mean = values.mean(axis=0)
    variance = (values**2).mean(axis=0) - mean**2
    stats = {"min": low, "max": high, "mean": mean, "std": np.sqrt(np.maximum(0, variance))}
    stats["count"] = np.array([len(values)])
    cumulative = []
    for column in range(values.shape[1]):
        edges = np.linspace(low[column] - 1e-10, high[column] + 1e-10, QUANTILE_BINS + 1)
        if levels is None:
            counts = _histogram(values[:, column], edges)
        else:  # every pixel of a level falls in that level's bin
            level_values = np.arange(256, dtype=values.dtype)
            counts = _histogram(level_values, edges, levels[column].astype(np.float64))
        cumulative.append((np.cumsum(counts), edges))
    for q, key in zip(QUANTILES, QUANTILE_KEYS, strict=True):
        target = q * len(values)
        stats[key] = np.array([_histogram_quantile(c, e, target) for c, e in cumulative])
    return stats


def _sample_indices(length: int) -> np.ndarray:
    """lerobot's frame sampling for image stats: ~length**0.75 frames, at least 100."""
    low = min(100, length)
    count = max(low, min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, count)).astype(int)


def _downsample(images: np.ndarray) -> np.ndarray:
    """lerobot's auto_downsample_height_width on [N, H, W, C]: stride to ~150 px above 300 px."""
    height, width = images.shape[1:3]
    if max(height, width) < 300:
        return images
    factor = int(width / 150) if width > height else int(height / 150)
    return images[:, ::factor, ::factor]


def _image_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of sampled frames [T, H, W, C] uint8, scaled to [0, 1] as [C, 1, 1]."""
    sampled = _downsample(images[_sample_indices(len(images))])
    stats = _feature_stats(sampled.reshape(-1, sampled.shape[-1]))
    scaled = {key: (value / 255.0).reshape(-1, 1, 1) for key, value in stats.items()}
    return scaled | {"count": np.array([len(sampled)])}


def _merge_stats(total: dict[str, np.ndarray], episode: dict[str, np.ndarray]) -> dict:
    """Dataset stats after one more episode, as lerobot's aggregate_stats merges a pair.

    Mean and variance combine exactly (count-weighted); quantiles are count-weighted means of
    the two sides' quantiles, an approximation lerobot accepts to stay incremental.
    """
    counts = np.stack([total["count"], episode["count"]])
    count = counts.sum(axis=0)
    means = np.stack([total["mean"], episode["mean"]])
    weights = counts.reshape(2, *[1] * (means.ndim - 1))
    mean = (means * weights).sum(axis=0) / count
    spread = np.stack([total["std"] ** 2, episode["std"] ** 2]) + (means - mean) ** 2
    merged = {
        "min": np.min(np.stack([total["min"], episode["min"]]), axis=0),
        "max": np.max(np.stack([total["max"], episode["max"]]), axis=0),
        "mean": mean,
        "std": np.sqrt((spread * weights).sum(axis=0) / count),
        "count": count,
    }
    for key in QUANTILE_KEYS:
        merged[key] = (np.stack([total[key], episode[key]]) * weights).sum(axis=0) / count
    return merged


def _to_json(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {key: np.asarray(value).tolist() for key, value in stats.items()}


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _validate_features(features: dict[str, dict]) -> dict[str, dict]:
    """Normalized copies of user features (shape as list); ValueError naming a bad one."""
    normalized = {}
    for key, feature in features.items():
        if "/" in key:
            raise ValueError(f"feature name {key!r} contains '/', which lerobot forbids")
        if key in DEFAULT_FEATURES:
            raise ValueError(f"feature {key!r} is added by the writer; remove it from `features`")
        dtype, shape = feature.get("dtype"), feature.get("shape")
        if shape is None or any(int(s) < 1 for s in shape):
            raise ValueError(f"feature {key!r} needs a positive `shape`, got {shape!r}")
        shape = [int(s) for s in shape]
        if dtype in VISUAL_DTYPES:
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"{dtype} feature {key!r} needs shape [H, W, 3], got {shape}")
        elif dtype == "string":
            if shape != [1]:
                raise ValueError(f"string feature {key!r} needs shape [1], got {shape}")
        else:
            try:
                np_dtype = np.dtype(dtype)
            except TypeError as error:
                raise ValueError(f"feature {key!r} has unknown dtype {dtype!r}") from error
            if np_dtype.kind not in "biuf":
                raise ValueError(f"feature {key!r} has unsupported dtype {dtype!r}")
            if len(shape) != 1:
                raise ValueError(f"numeric feature {key!r} must be 1-D, got shape {shape}")
        normalized[key] = {**feature, "shape": shape, "names": feature.get("names")}
    return normalized


def _arrow_type(feature: dict) -> pa.DataType:
    dtype, shape = feature["dtype"], feature["shape"]
    if dtype == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if dtype == "string":
        return pa.string()
    scalar = pa.from_numpy_dtype(np.dtype(dtype))
    return scalar if shape == [1] else pa.list_(scalar, shape[0])


def _hf_feature(feature: dict) -> dict:
    """The `datasets` (>=4) Features JSON lerobot's parquet files carry in their metadata."""
    dtype, shape = feature["dtype"], feature["shape"]
    if dtype == "image":
        return {"_type": "Image"}
    value = {"dtype": dtype, "_type": "Value"}
    return value if shape == [1] else {"feature": value, "length": shape[0], "_type": "List"}


def _next_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """lerobot's update_chunk_file_indices: a chunk holds `chunks_size` files."""
    if file_index == chunks_size - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)  # lerobot's level
    return buffer.getvalue()


def _write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=4, ensure_ascii=False)


def _size_mb(path: Path) -> float:
    return path.stat().st_size / _MB


def _fingerprint(table: pa.Table) -> str:
    """A 16-hex-digit content hash standing where `datasets` puts its (random) fingerprint."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return hashlib.blake2b(sink.getvalue().to_pybytes(), digest_size=8).hexdigest()


def _write_tasks(tasks: dict[str, int], path: Path) -> None:
    """meta/tasks.parquet as lerobot writes it: pandas, index named "task", task_index column.

    Labels and index are object dtype so that pandas 3 stores them as pandas 2 (lerobot's)
    does: `string` columns, not `large_string`.
    """
    frame = pd.DataFrame(
        {"task_index": list(tasks.values())},
        index=pd.Index(list(tasks), dtype=object, name="task"),
    )
    frame.columns = pd.Index(frame.columns, dtype=object)
    frame.to_parquet(path)


class LeRobotV3Writer:
    """Writes a LeRobot v3.0 dataset episode by episode; call `finalize()` (or use `with`).

    Files, their rollover and their statistics follow lerobot 0.6's LeRobotDataset recording
    (docs/lerobot_format.md says which files come out byte for byte the same).
    """

    def __init__(
        self,
        root: Path,
        repo_id: str,
        fps: int,
        features: dict[str, dict],
        robot_type: str | None = None,
        *,
        chunks_size: int = DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: float = DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: float = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
        vcodec: str = DEFAULT_VCODEC,
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            raise FileExistsError(
                f"{self.root} is not empty (it may already hold a dataset); "
                "choose a new root or delete it first"
            )
        if int(fps) <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps!r}")
        if chunks_size < 1 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
            raise ValueError(
                f"chunks_size={chunks_size}, data_files_size_in_mb={data_files_size_in_mb} and "
                f"video_files_size_in_mb={video_files_size_in_mb} must all be positive"
            )
        self.repo_id = repo_id
        self.fps = int(fps)
        self.user_features = _validate_features(features)
        self.features = {**self.user_features, **DEFAULT_FEATURES}
        self.video_keys = [k for k, f in self.features.items() if f["dtype"] == "video"]
        self.image_keys = [k for k, f in self.features.items() if f["dtype"] == "image"]
        self.vcodec = pick_video_codec(vcodec) if self.video_keys else None
        self.info = {  # lerobot's DatasetInfo fields, in its order
            "codebase_version": CODEBASE_VERSION,
            "fps": self.fps,
            "features": self.features,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": chunks_size,
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb,
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "robot_type": robot_type,
            "splits": {},
        }
        table_features = {k: f for k, f in self.features.items() if f["dtype"] != "video"}
        self._hf_features = {k: _hf_feature(f) for k, f in table_features.items()}
        self._schema = pa.schema(
            [(key, _arrow_type(feature)) for key, feature in table_features.items()]
        )
        self._tasks: dict[str, int] = {}
        self._num_episodes = 0
        self._num_frames = 0
        self._stats: dict[str, dict[str, np.ndarray]] = {}  # dataset stats so far
        self._data_file: tuple[int, int] | None = None
        self._data_writer: pq.ParquetWriter | None = None
        self._data_file_start = 0  # global index of the current data file's first frame
        self._videos: dict[str, tuple[int, int, float]] = {}  # key -> chunk, file, end time
        self._last_row: dict | None = None
        self._pending_rows: list[dict] = []
        self._episodes_writer: pq.ParquetWriter | None = None
        self._finalized = False
        _write_json(self.info, self.root / INFO_PATH)

    def __enter__(self) -> "LeRobotV3Writer":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finalize()
        else:  # leave what was written readable by closing files, but no metadata
            self._close_files()

    @property
    def num_episodes(self) -> int:
        return self._num_episodes

    @property
    def num_frames(self) -> int:
        return self._num_frames

    def add_episode(self, frames: dict[str, np.ndarray], task: str) -> int:
        """Append one episode (arrays [T, ...] per user feature); returns its episode index."""
        if self._finalized:
            raise RuntimeError(f"dataset {self.root} is finalized; open a new writer")
        episode_index = self.num_episodes
        length = self._check_frames(frames, task, episode_index)
        task_index = self._tasks.setdefault(task, len(self._tasks))
        start = self.num_frames
        columns = self._default_columns(episode_index, task_index, start, length)
        arrays = {**{k: np.asarray(v) for k, v in frames.items()}, **columns}

        row: dict = {"episode_index": episode_index, "tasks": [task], "length": length}
        row.update(self._write_data(arrays, length, start))
        for key in self.video_keys:
            row.update(self._write_video(key, arrays[key]))
        episode_stats = self._episode_stats(arrays)
        for key, stats in episode_stats.items():
            for name, value in stats.items():
                row[f"stats/{key}/{name}"] = value.tolist()
        self._add_episode_row(row)
        self._stats = {
            key: _merge_stats(self._stats[key], stats) if self._stats else stats
            for key, stats in episode_stats.items()
        }
        self._num_episodes += 1
        self._num_frames += length
        logger.debug("%s: wrote episode %d (%d frames)", self.root, episode_index, length)
        return episode_index

    def _check_frames(self, frames: dict[str, np.ndarray], task: str, episode_index: int) -> int:
        where = f"episode {episode_index} of {self.root}"
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"{where}: task must be a non-empty string, got {task!r}")
        missing = set(self.user_features) - set(frames)
        extra = set(frames) - set(self.user_features)
        if missing or extra:
            raise ValueError(
                f"{where}: frames keys differ from features; missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )
        lengths = {key: len(frames[key]) for key in frames}
        length = next(iter(lengths.values()), 0)
        if length == 0 or any(n != length for n in lengths.values()):
            raise ValueError(f"{where}: every feature needs the same T >= 1 frames, got {lengths}")
        for key, feature in self.user_features.items():
            value = np.asarray(frames[key])
            if feature["dtype"] in VISUAL_DTYPES:
                expected = (length, *feature["shape"])
                if value.shape != expected or value.dtype != np.uint8:
                    raise ValueError(
                        f"{where}: {key} must be uint8 {list(expected)} (RGB, channels last), "
                        f"got {value.dtype} {list(value.shape)}"
                    )
            elif feature["dtype"] != "string":
                if value.reshape(length, -1).shape[1] != feature["shape"][0]:
                    width = feature["shape"][0]
                    raise ValueError(
                        f"{where}: {key} must be [T, {width}], got {list(value.shape)}"
                    )
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    frame = int(np.argwhere(~np.isfinite(value.reshape(length, -1)))[0, 0])
                    raise ValueError(f"{where}: {key} is NaN/inf at frame {frame}")
        return length

    def _default_columns(
        self, episode_index: int, task_index: int, start: int, length: int
    ) -> dict[str, np.ndarray]:
        frame_index = np.arange(length, dtype=np.int64)
        return {
            "timestamp": frame_index / self.fps,  # float64: stats use it, the data file float32
            "frame_index": frame_index,
            "episode_index": np.full(length, episode_index, dtype=np.int64),
            "index": np.arange(start, start + length, dtype=np.int64),
            "task_index": np.full(length, task_index, dtype=np.int64),
        }

    def _column(self, key: str, value: np.ndarray, length: int) -> pa.Array:
        feature = self.features[key]
        arrow_type = self._schema.field(key).type
        if feature["dtype"] == "image":
            png = pa.array([_png(image) for image in value], type=pa.binary())
            # lerobot keeps the name of the PNG each frame was staged in next to its bytes.
            paths = pa.array([IMAGE_FILE.format(frame_index=i) for i in range(length)])
            return pa.StructArray.from_arrays([png, paths], names=["bytes", "path"])
        if feature["dtype"] == "string":
            return pa.array([str(v) for v in value], type=pa.string())
        flat = value.reshape(length, -1).astype(feature["dtype"])
        if feature["shape"] == [1]:
            return pa.array(flat[:, 0], type=arrow_type)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), feature["shape"][0])

    def _write_data(self, arrays: dict[str, np.ndarray], length: int, start: int) -> dict:
        """Append the episode's rows to the current data file, or start the next one first.

        lerobot starts the next file when the current one's size on disk plus the episode at
        the file's average bytes per frame would reach `data_files_size_in_mb`.
        """
        columns = [self._column(name, arrays[name], length) for name in self._schema.names]
        table = pa.Table.from_arrays(columns, schema=self._schema)
        if self._data_file is None:
            self._data_file = (0, 0)
        else:
            size_mb = _size_mb(self._data_writer.where)
            frames_in_file = start - self._data_file_start
            per_frame_mb = size_mb / frames_in_file if frames_in_file > 0 else 0
            if size_mb + per_frame_mb * length >= self.info["data_files_size_in_mb"]:
                self._data_writer.close()
                self._data_writer = None
                self._data_file = _next_file(*self._data_file, self.info["chunks_size"])
        if self._data_writer is None:
            chunk_index, file_index = self._data_file
            path = self.root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            hf_json = {"info": {"features": self._hf_features}, "fingerprint": _fingerprint(table)}
            schema = self._schema.with_metadata({"huggingface": json.dumps(hf_json)})
            self._data_writer = pq.ParquetWriter(path, schema, compression="snappy")
            self._data_file_start = start
        self._data_writer.write_table(table)
        return {
            "data/chunk_index": self._data_file[0],
            "data/file_index": self._data_file[1],
            "dataset_from_index": start,
            "dataset_to_index": start + length,
        }

    def _write_video(self, key: str, frames: np.ndarray) -> dict:
        """Encode the episode and append it to the camera's current mp4, or start the next one
        when the two together would reach `video_files_size_in_mb` (lerobot's rule)."""
        episode_mp4 = encode_episode_video(frames, self.fps, self.vcodec)
        chunk_index, file_index, from_timestamp = self._videos.get(key, (0, 0, 0.0))
        if key in self._videos:
            path = self.root / VIDEO_PATH.format(
                video_key=key, chunk_index=chunk_index, file_index=file_index
            )
            if _size_mb(path) + len(episode_mp4) / _MB >= self.info["video_files_size_in_mb"]:
                chunk_index, file_index = _next_file(
                    chunk_index, file_index, self.info["chunks_size"]
                )
                from_timestamp = 0.0
        path = VIDEO_PATH.format(video_key=key, chunk_index=chunk_index, file_index=file_index)
        append_episode_video(self.root / path, episode_mp4)
        # lerobot adds each episode's duration in floating point rather than reading the file.
        to_timestamp = from_timestamp + video_duration_s(episode_mp4)
        self._videos[key] = (chunk_index, file_index, to_timestamp)
        return {
            f"videos/{key}/chunk_index": chunk_index,
            f"videos/{key}/file_index": file_index,
            f"videos/{key}/from_timestamp": from_timestamp,
            f"videos/{key}/to_timestamp": to_timestamp,
        }

    def _episode_stats(self, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        """Per-episode stats of every feature (defaults included) from the values lerobot
        computes them on: timestamps as float64 seconds, user features in their dtype."""
        stats = {}
        for key, feature in self.features.items():
            value = arrays[key]
            if feature["dtype"] in VISUAL_DTYPES:
                stats[key] = _image_stats(value)
            elif feature["dtype"] != "string":
                matrix = value.reshape(len(value), -1)
                if key in self.user_features:
                    matrix = matrix.astype(feature["dtype"])
                stats[key] = _feature_stats(matrix)
        return stats

    def _add_episode_row(self, row: dict) -> None:
        """Queue the episode's metadata row, starting the next episodes file first when lerobot
        would: when the current file's size plus its size per episode index times this
        episode's length reaches `data_files_size_in_mb` (lerobot's estimate, kept so files
        split where lerobot's do)."""
        chunk_index, file_index = 0, 0
        if self._last_row is not None:
            chunk_index = self._last_row["meta/episodes/chunk_index"]
            file_index = self._last_row["meta/episodes/file_index"]
            path = self.root / EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)
            if path.exists():
                size_mb = _size_mb(path)
                previous = self._last_row["episode_index"]
                per_episode_mb = size_mb / previous if previous > 0 else 0.0
                if size_mb + per_episode_mb * row["length"] >= self.info["data_files_size_in_mb"]:
                    self._flush_episode_rows()
                    self._close_episodes_file()
                    chunk_index, file_index = _next_file(
                        chunk_index, file_index, self.info["chunks_size"]
                    )
        row["meta/episodes/chunk_index"] = chunk_index
        row["meta/episodes/file_index"] = file_index
        self._pending_rows.append(row)
        self._last_row = row
        if len(self._pending_rows) >= EPISODE_ROWS_PER_GROUP:
            self._flush_episode_rows()

    def _flush_episode_rows(self) -> None:
        if not self._pending_rows:
            return
        rows = self._pending_rows
        table = pa.Table.from_pydict({key: [row[key] for row in rows] for key in rows[0]})
        if self._episodes_writer is None:
            path = self.root / EPISODES_PATH.format(
                chunk_index=rows[0]["meta/episodes/chunk_index"],
                file_index=rows[0]["meta/episodes/file_index"],
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            self._episodes_writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        else:  # a later group may infer another type (an int min of a 1-frame episode)
            table = table.select(self._episodes_writer.schema.names)
            table = table.cast(self._episodes_writer.schema)
        self._episodes_writer.write_table(table)
        self._pending_rows = []

    def _close_episodes_file(self) -> None:
        if self._episodes_writer is not None:
            self._episodes_writer.close()
            self._episodes_writer = None

    def _close_files(self) -> None:
        if self._data_writer is not None:
            self._data_writer.close()
            self._data_writer = None
        self._flush_episode_rows()
        self._close_episodes_file()

    def finalize(self) -> None:
        """Close data and episodes files and write tasks, stats and info metadata."""
        if self._finalized:
            return
        if not self.num_episodes:
            raise ValueError(f"dataset {self.root} has no episodes; add_episode() first")
        self._close_files()
        self._finalized = True
        _write_tasks(self._tasks, self.root / TASKS_PATH)
        stats = {key: _to_json(value) for key, value in self._stats.items()}
        _write_json(stats, self.root / STATS_PATH)
        for key in self.video_keys:
            first = self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            self.info["features"][key]["info"] = {
                **read_video_info(first),
                **encoder_settings(self.vcodec),
                "is_depth_map": False,
            }
        self.info.update(
            total_episodes=self.num_episodes,
            total_frames=self.num_frames,
            total_tasks=len(self._tasks),
            splits={"train": f"0:{self.num_episodes}"},
        )
        _write_json(self.info, self.root / INFO_PATH)
        logger.info(
            "Wrote LeRobot v3 dataset %s: %d episodes, %d frames, %d tasks",
            self.root,
            self.num_episodes,
            self.num_frames,
            len(self._tasks),
        )


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def _is_depth_map(feature: dict) -> bool:
    """Whether a visual feature holds depth, in any spelling lerobot has used: `is_depth_map`
    in its `info` (0.6), `video.is_depth_map` there or in the older `video_info`."""
    info = feature.get("info") or {}
    video_info = feature.get("video_info") or {}
    return bool(
        info.get("is_depth_map")
        or info.get("video.is_depth_map")
        or video_info.get("video.is_depth_map")
    )


def _is_rgb_camera(key: str, feature: dict) -> bool:
    """RGB views only: depth maps and segmentation are dropped; the policy reads colour views."""
    if feature.get("dtype") not in VISUAL_DTYPES or _is_depth_map(feature):
        return False
    if (feature.get("info") or {}).get("video.channels", 3) != 3:
        return False
    lowered = key.lower()
    return "depth" not in lowered and "segment" not in lowered


class LeRobotV3Dataset:
    """A LeRobot v3.0 dataset on local disk: metadata tables, per-episode rows and frames.

    `cameras` are the views to read (None: every RGB camera in info.json); a dataset without
    an `action` feature or one of those cameras is refused when opened, and every path it names
    must stay inside `root`.
    """

    def __init__(
        self,
        root: Path,
        repo_id: str | None = None,
        dataset: str | None = None,
        cameras: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.repo_id = repo_id or self.root.name
        self.name = dataset or self.repo_id.split("/")[-1]
        self.info = self._load_info()
        self.fps = int(self.info["fps"])
        self.features: dict = self.info["features"]
        if ACTION_KEY not in self.features:
            raise self._error(
                f"{INFO_PATH} has no {ACTION_KEY!r} feature (features: {sorted(self.features)}); "
                "a policy is trained on the native actions: convert the dataset with them"
            )
        self.camera_keys = self._camera_keys(cameras)
        self._check_path_templates()
        self.tasks = self._load_tasks()
        self.episodes = self._load_episodes()
        self.num_episodes = len(self.episodes)
        self.num_frames = int(self.episodes["length"].sum())
        self._row_of = {int(e): i for i, e in enumerate(self.episodes["episode_index"])}
        self._task_of = dict(
            zip(self.tasks["task_index"].astype(int), self.tasks.index, strict=True)
        )
        self._starts = self.episodes["dataset_from_index"].to_numpy(dtype=np.int64)
        self._tables: OrderedDict[Path, pd.DataFrame] = OrderedDict()
        self._video = VideoFrameReader()

    def __repr__(self) -> str:
        return (
            f"LeRobotV3Dataset({self.root}, episodes={self.num_episodes}, "
            f"frames={self.num_frames}, fps={self.fps}, cameras={self.camera_keys})"
        )

    def __enter__(self) -> "LeRobotV3Dataset":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._video.close()
        self._tables.clear()

    # -- metadata ----------------------------------------------------------------------------

    def _error(self, message: str) -> LeRobotFormatError:
        return LeRobotFormatError(f"LeRobot dataset {self.name!r} at {self.root}: {message}")

    def _camera_keys(self, cameras: Sequence[str] | None) -> list[str]:
        rgb = [key for key, feature in self.features.items() if _is_rgb_camera(key, feature)]
        wanted = list(cameras) if cameras is not None else rgb
        missing = [key for key in wanted if key not in rgb]
        if wanted and not missing:
            return wanted
        folders = sorted(p.name for p in (self.root / "videos").glob("*") if p.is_dir())
        if missing:
            depth = [key for key in missing if _is_depth_map(self.features.get(key) or {})]
            note = f"; {depth} hold depth maps" if depth else ""
            what = f"has no RGB camera feature {missing} (the views asked for: {wanted}{note})"
        else:
            what = "lists no RGB camera feature (dtype 'video' or 'image', 3 channels)"
        raise self._error(
            f"{INFO_PATH} {what}; its RGB cameras: {rgb}, folders under videos/: {folders}. "
            f"Add the camera to the `features` of {INFO_PATH}, or read other cameras (the "
            "dataset's `cameras` in the registry, or `options: {cameras: [...]}` or "
            "`{cameras: all}` of its source)"
        )

    def _inside_root(self, relative: str, what: str) -> Path:
        """`root / relative`, refused if it leads outside the root (an absolute path, `..`).

        Checked on the path as written, not on resolved symlinks: a hub snapshot links its
        files into a shared cache outside the root.
        """
        path = self.root / relative
        if not Path(os.path.normpath(path)).is_relative_to(os.path.normpath(self.root)):
            raise self._error(
                f"{what} leads to {os.path.normpath(path)}, outside the dataset root; a dataset "
                "may only name files inside its root (relative paths, no '..')"
            )
        return path

    def _template_path(self, key: str, **fields: int | str) -> Path:
        template = str(self.info[key])
        try:
            relative = template.format(**fields)
        except (KeyError, IndexError, ValueError) as error:
            raise self._error(f"{INFO_PATH} {key} {template!r} is not a path template") from error
        return self._inside_root(relative, f"{INFO_PATH} {key} {template!r}")

    def _check_path_templates(self) -> None:
        """Refuse templates leading outside the root before any episode is read."""
        self._template_path("data_path", chunk_index=0, file_index=0)
        for key, feature in self.features.items():
            if feature.get("dtype") == "video":
                self._template_path("video_path", video_key=key, chunk_index=0, file_index=0)

    def _load_info(self) -> dict:
        path = self.root / INFO_PATH
        if not path.is_file():
            raise self._error(
                f"missing {INFO_PATH}; this is not a LeRobot dataset root (expected "
                "meta/info.json, meta/tasks.parquet, meta/episodes/, data/)"
            )
        try:
            info = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise self._error(f"{path} is not valid JSON ({error})") from error
        version = str(info.get("codebase_version", ""))
        if not version.startswith("v3."):
            raise self._error(
                f"codebase_version {version!r} is not v3.x; convert it with lerobot's "
                "`convert_dataset_v21_to_v30` script first"
            )
        for key in ("fps", "features", "data_path"):
            if key not in info:
                raise self._error(f"{path} has no {key!r} entry")
        return info

    def _read_parquet(self, path: Path, purpose: str) -> pd.DataFrame:
        try:
            return pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException) as error:
            what = "is missing" if not path.exists() else "is truncated or corrupt"
            raise self._error(
                f"{path.relative_to(self.root)} {what} ({purpose}): {error}. "
                "Re-download or re-write the dataset."
            ) from error

    def _load_tasks(self) -> pd.DataFrame:
        tasks = self._read_parquet(self.root / TASKS_PATH, "task table")
        if "task" in tasks.columns:  # some converters store the task as a column
            tasks = tasks.set_index("task")
        if "task_index" not in tasks.columns:
            raise self._error(f"{TASKS_PATH} has no task_index column")
        return tasks

    def _load_episodes(self) -> pd.DataFrame:
        paths = sorted((self.root / EPISODES_DIR).glob("*/*.parquet"))
        if not paths:
            raise self._error(f"no episode metadata under {EPISODES_DIR}/chunk-*/file-*.parquet")
        tables = []
        for path in paths:
            table = self._read_parquet(path, "episode metadata")
            tables.append(table[[c for c in table.columns if not c.startswith("stats/")]])
        episodes = pd.concat(tables, ignore_index=True)
        required = [
            "episode_index",
            "length",
            "data/chunk_index",
            "data/file_index",
            "dataset_from_index",
            "dataset_to_index",
        ]
        for key in self.features:
            if self.features[key].get("dtype") == "video":
                required += [
                    f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")
                ]
        absent = [c for c in required if c not in episodes.columns]
        if absent:
            raise self._error(f"episode metadata under {EPISODES_DIR} lacks columns {absent}")
        return episodes.sort_values("dataset_from_index", ignore_index=True)

    def _episode_row(self, episode_index: int) -> pd.Series:
        if episode_index not in self._row_of:
            known = self.episodes["episode_index"]
            raise IndexError(
                f"episode {episode_index} is not in {self.root} "
                f"(episodes {known.min()}..{known.max()})"
            )
        return self.episodes.iloc[self._row_of[episode_index]]

    def _data_path(self, row: pd.Series) -> Path:
        return self._template_path(
            "data_path",
            chunk_index=int(row["data/chunk_index"]),
            file_index=int(row["data/file_index"]),
        )

    def _data_table(self, row: pd.Series) -> pd.DataFrame:
        path = self._data_path(row)
        if path in self._tables:
            self._tables.move_to_end(path)
            return self._tables[path]
        table = self._read_parquet(path, f"frames of episode {int(row['episode_index'])}")
        table.index = table["index"].to_numpy()
        table = table.sort_index()
        self._tables[path] = table
        if len(self._tables) > 2:  # iteration walks files in order; two cover a boundary
            self._tables.popitem(last=False)
        return table

    # -- frames ------------------------------------------------------------------------------

    def episode_table(self, episode_index: int) -> pd.DataFrame:
        """Data rows of one episode (ordered by frame) plus a "task" string column."""
        row = self._episode_row(episode_index)
        table = self._data_table(row)
        start, stop = int(row["dataset_from_index"]), int(row["dataset_to_index"])
        rows = table.loc[start : stop - 1]
        rows = rows[rows["episode_index"] == episode_index].reset_index(drop=True)
        if len(rows) != int(row["length"]):
            raise self._error(
                f"episode {episode_index}: metadata says {int(row['length'])} frames "
                f"(index {start}..{stop - 1}) but its data file holds {len(rows)}"
            )
        rows["task"] = rows["task_index"].map(self._task_of)
        return rows

    def _camera(self, camera_key: str) -> dict:
        feature = self.features.get(camera_key)
        if feature is None or feature.get("dtype") not in VISUAL_DTYPES:
            raise KeyError(
                f"{camera_key!r} is not a camera of {self.root}; cameras: {self.camera_keys}"
            )
        return feature

    def _video_path(self, row: pd.Series, camera_key: str) -> Path:
        return self._template_path(
            "video_path",
            video_key=camera_key,
            chunk_index=int(row[f"videos/{camera_key}/chunk_index"]),
            file_index=int(row[f"videos/{camera_key}/file_index"]),
        )

    def _decode_video(
        self, row: pd.Series, camera_key: str, rows: pd.DataFrame
    ) -> np.ndarray:  # [N, H, W, 3]
        episode_index = int(row["episode_index"])
        path = self._video_path(row, camera_key)
        from_timestamp = float(row[f"videos/{camera_key}/from_timestamp"])
        timestamps = [from_timestamp + float(t) for t in rows["timestamp"]]
        try:
            return self._video.decode(path, timestamps)
        except VideoDecodeError as error:
            frame = int(rows["frame_index"].iloc[error.position])
            raise self._error(
                f"episode {episode_index}, frame {frame} of {camera_key} "
                f"(t={timestamps[error.position]:.4f} s in "
                f"{path.relative_to(self.root)}) cannot be decoded: {error}"
            ) from error

    def _decode_images(
        self, episode_index: int, camera_key: str, rows: pd.DataFrame
    ) -> np.ndarray:  # [N, H, W, 3]
        images = []
        for frame, cell in zip(rows["frame_index"], rows[camera_key], strict=True):
            try:
                data = cell.get("bytes")
                source = (
                    io.BytesIO(data)
                    if data is not None
                    else self._inside_root(cell["path"], f"the image path of frame {int(frame)}")
                )
                with Image.open(source) as image:
                    images.append(np.asarray(image.convert("RGB")))
            except (OSError, KeyError, TypeError, ValueError) as error:
                raise self._error(
                    f"episode {episode_index}, frame {int(frame)} of {camera_key} is not a "
                    f"decodable image: {error}"
                ) from error
        return np.stack(images)

    def episode_frames(self, episode_index: int, camera_key: str) -> np.ndarray:
        """All frames of one camera for one episode, [T, H, W, 3] uint8, by exact timestamp."""
        feature = self._camera(camera_key)
        rows = self.episode_table(episode_index)
        if feature["dtype"] == "video":
            return self._decode_video(self._episode_row(episode_index), camera_key, rows)
        return self._decode_images(episode_index, camera_key, rows)

    def frame(self, index: int, camera_key: str) -> np.ndarray:
        """One frame [H, W, 3] uint8 by global frame index (the data's `index` column)."""
        feature = self._camera(camera_key)
        position = int(np.searchsorted(self._starts, index, side="right")) - 1
        row = self.episodes.iloc[max(position, 0)]
        if position < 0 or index >= int(row["dataset_to_index"]):
            raise IndexError(
                f"frame index {index} is outside {self.root} ({self.num_frames} frames)"
            )
        table = self._data_table(row)
        if index not in table.index:
            raise self._error(f"frame index {index} is listed in the episodes but not in the data")
        rows = table.loc[[index]]
        if feature["dtype"] == "video":
            return self._decode_video(row, camera_key, rows)[0]
        return self._decode_images(int(row["episode_index"]), camera_key, rows)[0]

    def _invalid(self, reason: str, episode_index: int, message: str) -> InvalidEpisodeError:
        data = self._data_path(self._episode_row(episode_index)).relative_to(self.root)
        return InvalidEpisodeError(
            reason,
            f"dataset {self.name!r} episode {episode_index} ({data} in {self.root}): {message}",
        )

    def _check_rows(self, episode_index: int, rows: pd.DataFrame) -> str:
        """The episode's instruction, once its rows are known to be usable."""
        length = len(rows)
        if length == 0:
            raise self._invalid(ZERO_FRAMES, episode_index, "has zero frames")
        frame_index = rows["frame_index"].to_numpy()
        wrong = np.flatnonzero(frame_index != np.arange(length))
        if len(wrong):
            raise self._invalid(
                BAD_FRAME_INDEX,
                episode_index,
                f"frame_index is not 0..{length - 1} in storage order (row {wrong[0]} holds "
                f"frame_index {frame_index[wrong[0]]})",
            )
        timestamps = rows["timestamp"].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(timestamps) | np.r_[False, np.diff(timestamps) <= 0])
        if len(bad):
            frame = int(bad[0])
            after = f" after {timestamps[frame - 1]:.6g} s" if frame else ""
            raise self._invalid(
                BAD_TIMESTAMPS,
                episode_index,
                f"timestamps must be finite and increase frame by frame, but frame {frame} is "
                f"at {timestamps[frame]:.6g} s{after} (its video frames cannot be matched)",
            )
        language = rows["task"].iloc[0]
        if not isinstance(language, str) or not language.strip():
            task_index = int(rows["task_index"].iloc[0])
            state = "is empty in" if task_index in self._task_of else "is missing from"
            raise self._invalid(
                MISSING_LANGUAGE,
                episode_index,
                f"the task text of task_index {task_index} {state} {TASKS_PATH} (language "
                "comes from the data and is never invented)",
            )
        return language

    def episode(self, episode_index: int) -> Episode:
        """One episode as the common record: native action/state, RGB views, instruction.

        Raises `InvalidEpisodeError` (with its reason) for rows that cannot be used and
        `LeRobotFormatError` for files that cannot be read.
        """
        rows = self.episode_table(episode_index)
        language = self._check_rows(episode_index, rows)
        if ACTION_KEY not in rows.columns:
            raise self._error(
                f"the data of episode {episode_index} has no {ACTION_KEY!r} column; "
                f"columns: {list(rows.columns)}"
            )
        action = np.stack(rows[ACTION_KEY].to_numpy()).astype(np.float32).reshape(len(rows), -1)
        if STATE_KEY in rows.columns:
            state = np.stack(rows[STATE_KEY].to_numpy()).astype(np.float32).reshape(len(rows), -1)
        else:
            state = np.zeros((len(rows), 0), dtype=np.float32)
        images = {key: self.episode_frames(episode_index, key) for key in self.camera_keys}
        return Episode(
            dataset=self.name,
            episode_index=episode_index,
            language=language,
            fps=float(self.fps),
            action=action,
            state=state,
            images=images,
        )

    def iter_episodes(self) -> Iterator[Episode]:
        """Every episode in storage order (files are read sequentially)."""
        for episode_index in self.episodes["episode_index"]:
            yield self.episode(int(episode_index))


# --------------------------------------------------------------------------------------------
# Opening local roots and hub ids
# --------------------------------------------------------------------------------------------


def _download(repo_id: str, revision: str | None) -> Path:
    """Fetch a hub dataset: through lerobot where importable, else huggingface_hub."""
    try:
        if importlib.util.find_spec("lerobot") is not None:
            from lerobot.datasets.lerobot_dataset import LeRobotDataset

            return Path(LeRobotDataset(repo_id, revision=revision).root)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision))
    except Exception as error:  # offline, unknown repo, network: all end the same way
        raise LeRobotFormatError(
            f"cannot fetch LeRobot dataset {repo_id!r} (revision {revision or 'main'}) from the "
            f"Hugging Face hub: {type(error).__name__}: {error}. Without hub access, download it "
            "elsewhere and pass its local root directory instead."
        ) from error


def open_dataset(
    root_or_repo_id: str | Path,
    dataset: str | None = None,
    revision: str | None = None,
    cameras: Sequence[str] | None = None,
) -> LeRobotV3Dataset:
    """Open a LeRobot v3 dataset from a local root (offline) or a hub repo id ("owner/name").

    `dataset` names the episodes' source (default: the repo id's last part or the root's name);
    `cameras` the views to read (None: every RGB camera; depth maps are never read as RGB).
    """
    path = Path(root_or_repo_id)
    if path.exists():
        return LeRobotV3Dataset(path, dataset=dataset, cameras=cameras)
    text = str(root_or_repo_id)
    if isinstance(root_or_repo_id, Path) or not _REPO_ID.fullmatch(text):
        raise LeRobotFormatError(
            f"no LeRobot dataset at {text!r}: the directory does not exist and it is not a hub "
            "repo id of the form 'owner/name'"
        )
    return LeRobotV3Dataset(
        _download(text, revision), repo_id=text, dataset=dataset, cameras=cameras
    )
