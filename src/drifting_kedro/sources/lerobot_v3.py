"""The LeRobot v3.0 on-disk dataset format, written and read without the lerobot package.

lerobot cannot be installed beside this project's torch, yet its datasets are the lingua franca
of robot learning, so this module keeps the files byte-compatible with what lerobot writes:

    meta/info.json                       codebase_version "v3.0", features, fps, totals, paths
    meta/stats.json                      per feature: min max mean std count q01 q10 q50 q90 q99
    meta/tasks.parquet                   index = task string, column task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: offsets + per-episode stats
    data/chunk-XXX/file-YYY.parquet      many episodes per file, rolled over by size
    videos/<key>/chunk-XXX/file-YYY.mp4  many episodes per mp4 (libsvtav1, yuv420p, g=2, crf=30)

Matched against huggingface/lerobot `src/lerobot/datasets/` from the 0.4 line onward (datasets>=4,
v3.0 layout unchanged through 0.6): `lerobot_dataset.py` (episode/data/video rollover, episode
metadata columns; read at commit 00536c6c5bef), `utils.py` (paths, DEFAULT_FEATURES,
create_empty_dataset_info, hf features; 00448aa17406), `video_utils.py` (encoder settings,
get_video_info, 1e-4 s tolerance; 022f827f1402) and `compute_stats.py` (the RunningQuantileStats
version: quantile keys, image sampling, [3,1,1] layout). Deliberate differences, none visible to a
lerobot reader: stats.json quantiles are exact over the whole dataset (pixel histograms for
images) rather than count-weighted averages of per-episode quantiles; data-file rollover measures
uncompressed Arrow bytes; image features store `path: None` next to the PNG bytes; the episodes
metadata is one parquet file.
"""

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
    VideoFileMuxer,
    VideoFrameReader,
    encode_episode_video,
    pick_video_codec,
    read_video_info,
)

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNK_SIZE = 1000  # files per chunk directory
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 500
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
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


def _numeric_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dim stats of `values` [N, D]; min/max keep the feature dtype, like lerobot."""
    as64 = values.astype(np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": as64.mean(axis=0),
        "std": as64.std(axis=0),
        "count": np.array([len(values)]),
    }
    for q, key in zip(QUANTILES, QUANTILE_KEYS, strict=True):
        stats[key] = np.quantile(as64, q, axis=0)
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


def _pixel_histogram(images: np.ndarray) -> np.ndarray:
    """Per-channel counts of each uint8 level in `images` [N, H, W, C] -> [C, 256]."""
    channels = images.shape[-1]
    flat = images.reshape(-1, channels)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(channels)])


def _histogram_stats(hist: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Exact per-channel stats of uint8 pixels from their histogram, scaled to [0, 1], [C,1,1]."""
    levels = np.arange(256, dtype=np.float64)
    total = hist.sum(axis=1)  # [C]
    mean = (hist * levels).sum(axis=1) / total
    std = np.sqrt((hist * (levels[None] - mean[:, None]) ** 2).sum(axis=1) / total)
    cumulative = np.cumsum(hist, axis=1)

    def level_at(rank: np.ndarray) -> np.ndarray:  # value of the rank-th sorted pixel
        return np.array(
            [np.searchsorted(cumulative[c], r, side="right") for c, r in enumerate(rank)]
        )

    present = hist > 0
    stats = {
        "min": present.argmax(axis=1).astype(np.float64),
        "max": (255 - present[:, ::-1].argmax(axis=1)).astype(np.float64),
        "mean": mean,
        "std": std,
    }
    for q, key in zip(QUANTILES, QUANTILE_KEYS, strict=True):
        position = q * (total - 1)
        low, high = np.floor(position), np.ceil(position)
        value_low, value_high = level_at(low), level_at(high)
        stats[key] = value_low + (position - low) * (value_high - value_low)
    scaled = {key: (value / 255.0).reshape(-1, 1, 1) for key, value in stats.items()}
    return {**scaled, "count": np.array([count])}


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
    with open(path, "w") as handle:
        json.dump(data, handle, indent=4, ensure_ascii=False)


class LeRobotV3Writer:
    """Writes a LeRobot v3.0 dataset episode by episode; call `finalize()` (or use `with`)."""

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
        self.info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": chunks_size,
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb,
            "fps": self.fps,
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": self.features,
        }
        table_features = {k: f for k, f in self.features.items() if f["dtype"] != "video"}
        hf_json = json.dumps(
            {"info": {"features": {k: _hf_feature(f) for k, f in table_features.items()}}}
        )
        self._schema = pa.schema(
            [(key, _arrow_type(feature)) for key, feature in table_features.items()],
            metadata={"huggingface": hf_json},
        )
        self._tasks: dict[str, int] = {}
        self._episode_rows: list[dict] = []
        self._values: dict[str, list[np.ndarray]] = {}  # numeric feature -> per-episode [T, D]
        self._pixels: dict[str, np.ndarray] = {}  # visual feature -> [3, 256] histogram
        self._pixel_counts: dict[str, int] = {}
        self._data_file: tuple[int, int] | None = None
        self._data_writer: pq.ParquetWriter | None = None
        self._data_bytes = 0
        self._videos: dict[str, tuple[int, int, VideoFileMuxer]] = {}
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
        return len(self._episode_rows)

    @property
    def num_frames(self) -> int:
        return sum(row["length"] for row in self._episode_rows)

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
        for key, stats in self._episode_stats(arrays).items():
            for name, value in stats.items():
                row[f"stats/{key}/{name}"] = np.asarray(value).tolist()
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self._episode_rows.append(row)
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
            "timestamp": (frame_index / self.fps).astype(np.float32),
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
            paths = pa.nulls(length, type=pa.string())
            return pa.StructArray.from_arrays([png, paths], names=["bytes", "path"])
        if feature["dtype"] == "string":
            return pa.array([str(v) for v in value], type=pa.string())
        flat = value.reshape(length, -1).astype(feature["dtype"])
        if feature["shape"] == [1]:
            return pa.array(flat[:, 0], type=arrow_type)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), feature["shape"][0])

    def _write_data(self, arrays: dict[str, np.ndarray], length: int, start: int) -> dict:
        columns = [self._column(name, arrays[name], length) for name in self._schema.names]
        table = pa.Table.from_arrays(columns, schema=self._schema)
        limit = self.info["data_files_size_in_mb"] * _MB
        if self._data_file is None:
            self._data_file = (0, 0)
        elif self._data_bytes + table.nbytes >= limit:
            self._data_writer.close()
            self._data_writer = None
            self._data_file = _next_file(*self._data_file, self.info["chunks_size"])
        if self._data_writer is None:
            chunk_index, file_index = self._data_file
            path = self.root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, self._schema, compression="snappy")
            self._data_bytes = 0
        self._data_writer.write_table(table)
        self._data_bytes += table.nbytes
        return {
            "data/chunk_index": self._data_file[0],
            "data/file_index": self._data_file[1],
            "dataset_from_index": start,
            "dataset_to_index": start + length,
        }

    def _write_video(self, key: str, frames: np.ndarray) -> dict:
        episode_mp4 = encode_episode_video(frames, self.fps, self.vcodec)
        limit = self.info["video_files_size_in_mb"] * _MB
        if key not in self._videos:
            chunk_index, file_index, muxer = 0, 0, None
        else:
            chunk_index, file_index, muxer = self._videos[key]
            if muxer.size_bytes + len(episode_mp4) >= limit:
                muxer.close()
                muxer = None
                chunk_index, file_index = _next_file(
                    chunk_index, file_index, self.info["chunks_size"]
                )
        if muxer is None:
            path = VIDEO_PATH.format(video_key=key, chunk_index=chunk_index, file_index=file_index)
            muxer = VideoFileMuxer(self.root / path)
        self._videos[key] = (chunk_index, file_index, muxer)
        from_timestamp, to_timestamp = muxer.append(episode_mp4)
        return {
            f"videos/{key}/chunk_index": chunk_index,
            f"videos/{key}/file_index": file_index,
            f"videos/{key}/from_timestamp": from_timestamp,
            f"videos/{key}/to_timestamp": to_timestamp,
        }

    def _episode_stats(self, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        """Per-episode stats of every feature (defaults included), accumulating dataset stats."""
        stats = {}
        for key, feature in self.features.items():
            value = arrays[key]
            if feature["dtype"] in VISUAL_DTYPES:
                sampled = _downsample(value[_sample_indices(len(value))])
                hist = _pixel_histogram(sampled)
                stats[key] = _histogram_stats(hist, len(sampled))
                self._pixels[key] = self._pixels.get(key, 0) + hist
                self._pixel_counts[key] = self._pixel_counts.get(key, 0) + len(sampled)
            elif feature["dtype"] != "string":
                matrix = value.reshape(len(value), -1).astype(feature["dtype"])
                stats[key] = _numeric_stats(matrix)
                self._values.setdefault(key, []).append(matrix)
        return stats

    def _dataset_stats(self) -> dict[str, dict[str, list]]:
        stats = {}
        for key, feature in self.features.items():
            if feature["dtype"] in VISUAL_DTYPES:
                stats[key] = _histogram_stats(self._pixels[key], self._pixel_counts[key])
            elif feature["dtype"] != "string":
                stats[key] = _numeric_stats(np.concatenate(self._values[key]))
        return {key: _to_json(value) for key, value in stats.items()}

    def _close_files(self) -> None:
        if self._data_writer is not None:
            self._data_writer.close()
            self._data_writer = None
        for _, _, muxer in self._videos.values():
            muxer.close()

    def finalize(self) -> None:
        """Close data/video files and write episodes, tasks, stats and info metadata."""
        if self._finalized:
            return
        if not self._episode_rows:
            raise ValueError(f"dataset {self.root} has no episodes; add_episode() first")
        self._close_files()
        self._finalized = True

        columns = {key: [row[key] for row in self._episode_rows] for key in self._episode_rows[0]}
        episodes_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pydict(columns), episodes_path, compression="snappy")

        tasks = pd.DataFrame({"task_index": list(self._tasks.values())}, index=list(self._tasks))
        table = pa.Table.from_pandas(tasks)
        table = table.cast(
            pa.schema(
                [
                    (f.name, pa.string() if f.type == pa.large_string() else f.type)
                    for f in table.schema
                ],
                metadata=table.schema.metadata,
            )
        )  # pandas 3 writes large_string; lerobot (pandas 2) writes string
        pq.write_table(table, self.root / TASKS_PATH)

        _write_json(self._dataset_stats(), self.root / STATS_PATH)

        for key in self.video_keys:
            first = self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            self.info["features"][key]["info"] = read_video_info(first)
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


def _is_rgb_camera(key: str, feature: dict) -> bool:
    """RGB views only: depth maps and segmentation are dropped; the policy reads colour views."""
    if feature.get("dtype") not in VISUAL_DTYPES:
        return False
    info = feature.get("info") or {}
    if info.get("video.is_depth_map") or info.get("video.channels", 3) != 3:
        return False
    lowered = key.lower()
    return "depth" not in lowered and "segment" not in lowered


class LeRobotV3Dataset:
    """A LeRobot v3.0 dataset on local disk: metadata tables, per-episode rows and frames.

    `cameras` are the views to read (default: every RGB camera in info.json); a dataset without
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
        wanted = list(cameras) if cameras else rgb
        missing = [key for key in wanted if key not in rgb]
        if wanted and not missing:
            return wanted
        folders = sorted(p.name for p in (self.root / "videos").glob("*") if p.is_dir())
        what = (
            f"has no RGB camera feature {missing} (the registry's views of {self.name!r})"
            if missing
            else "lists no RGB camera feature (dtype 'video' or 'image', 3 channels)"
        )
        raise self._error(
            f"{INFO_PATH} {what}; its RGB cameras: {rgb}, folders under videos/: {folders}. "
            f"Add the camera to the `features` of {INFO_PATH}, or fix the dataset's `cameras` "
            "in action_space.REGISTRY"
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
    `cameras` the views to read (default: every RGB camera).
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
