"""LeRobot v3 writer/reader: round trip, exact-timestamp frames, lerobot's layout, clear errors."""

import json
import logging
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drifting_kedro.sources.lerobot_v3 import (
    LeRobotFormatError,
    LeRobotV3Writer,
    open_dataset,
)
from drifting_kedro.sources.video import pick_video_codec

SIZE = 32
LENGTHS = (20, 17, 23)
TASKS = ("pick up the cube", "insert the peg", "pick up the cube")
FEATURES = {
    "action": {"dtype": "float32", "shape": [6], "names": [f"a{i}" for i in range(6)]},
    "observation.state": {"dtype": "float32", "shape": [6], "names": None},
    "observation.images.top": {
        "dtype": "video",
        "shape": [SIZE, SIZE, 3],
        "names": ["height", "width", "channels"],
    },
    "observation.images.wrist": {
        "dtype": "image",
        "shape": [16, 16, 3],
        "names": ["height", "width", "channels"],
    },
}


def brightness(index: int) -> int:
    """Grey level that encodes a global frame index (3 levels apart survive AV1 at crf 30)."""
    return 10 + 3 * index


def ramp_video(start: int, length: int) -> np.ndarray:
    """[T, H, W, 3] frames whose brightness encodes the global index, with a smooth gradient."""
    gradient = np.linspace(-4, 4, SIZE)[None, :, None]
    frames = [
        np.clip(brightness(start + i) + gradient + np.zeros((SIZE, SIZE, 3)), 0, 255)
        for i in range(length)
    ]
    return np.stack(frames).astype(np.uint8)


def dummy_episodes(seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    episodes, start = [], 0
    for length in LENGTHS:
        episodes.append(
            {
                "action": rng.normal(size=(length, 6)).astype(np.float32),
                "observation.state": rng.normal(size=(length, 6)).astype(np.float32),
                "observation.images.top": ramp_video(start, length),
                "observation.images.wrist": rng.integers(
                    0, 256, (length, 16, 16, 3), dtype=np.uint8
                ),
            }
        )
        start += length
    return episodes


def write_dataset(root: Path, episodes: list[dict], **kwargs) -> Path:
    with LeRobotV3Writer(
        root, "tests/tiny", fps=10, features=FEATURES, robot_type="sim", **kwargs
    ) as writer:
        for frames, task in zip(episodes, TASKS, strict=True):
            writer.add_episode(frames, task)
    return root


@pytest.fixture(scope="module")
def dummy_data() -> list[dict]:
    return dummy_episodes()


@pytest.fixture(scope="module")
def dummy_root(tmp_path_factory: pytest.TempPathFactory, dummy_data: list[dict]) -> Path:
    return write_dataset(tmp_path_factory.mktemp("lerobot") / "tiny", dummy_data)


def copy_of(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


def test_round_trip_values_and_frames(dummy_root: Path, dummy_data: list[dict]):
    dataset = open_dataset(dummy_root, dataset="tiny_sim")
    assert (dataset.num_episodes, dataset.num_frames, dataset.fps) == (3, sum(LENGTHS), 10)
    assert dataset.camera_keys == ["observation.images.top", "observation.images.wrist"]
    episodes = list(dataset.iter_episodes())
    for episode, frames, task in zip(episodes, dummy_data, TASKS, strict=True):
        assert episode.dataset == "tiny_sim" and episode.language == task and episode.fps == 10
        np.testing.assert_array_equal(episode.action, frames["action"])
        np.testing.assert_array_equal(episode.state, frames["observation.state"])
        np.testing.assert_array_equal(
            episode.images["observation.images.wrist"], frames["observation.images.wrist"]
        )
        video = episode.images["observation.images.top"].astype(float)
        assert video.shape == frames["observation.images.top"].shape
        assert np.abs(video - frames["observation.images.top"]).mean() < 8
    table = dataset.episode_table(1)
    assert list(table["frame_index"]) == list(range(LENGTHS[1]))
    assert set(table["task"]) == {TASKS[1]} and list(table["index"]) == list(range(20, 37))


def test_frames_are_picked_by_exact_timestamp_in_a_shared_mp4(dummy_root: Path):
    dataset = open_dataset(dummy_root)
    assert len(list((dummy_root / "videos").rglob("*.mp4"))) == 1  # all episodes in one file
    starts = np.cumsum((0, *LENGTHS[:-1]))
    rng = np.random.default_rng(1)
    indices = [*starts, *(starts[1:] - 1), *rng.integers(0, sum(LENGTHS), 12)]
    for index in indices:
        image = dataset.frame(int(index), "observation.images.top")
        decoded = round((float(image.mean()) - 10) / 3)
        assert decoded == index, f"frame({index}) returned the image of frame {decoded}"
    later = dataset.episode_frames(2, "observation.images.top")
    np.testing.assert_array_equal(later[0], dataset.frame(int(starts[2]), "observation.images.top"))
    assert [round((float(f.mean()) - 10) / 3) for f in later] == list(
        range(starts[2], sum(LENGTHS))
    )


def test_files_and_schema_are_the_ones_lerobot_writes(dummy_root: Path):
    files = {p.relative_to(dummy_root).as_posix() for p in dummy_root.rglob("*") if p.is_file()}
    assert files == {
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
        "videos/observation.images.top/chunk-000/file-000.mp4",
    }
    info = json.loads((dummy_root / "meta/info.json").read_text())
    # lerobot 0.4 utils.create_empty_dataset_info keys, filled by save_episode
    assert list(info) == [
        "codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks",
        "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits",
        "data_path", "video_path", "features",
    ]  # fmt: skip
    assert info["codebase_version"] == "v3.0" and info["splits"] == {"train": "0:3"}
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 60, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert (
        info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    assert list(info["features"])[-5:] == [
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]
    assert info["features"]["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    assert info["features"]["index"] == {"dtype": "int64", "shape": [1], "names": None}
    video_info = info["features"]["observation.images.top"]["info"]
    assert video_info == {
        "video.height": SIZE,
        "video.width": SIZE,
        "video.codec": "av1",
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": 10,
        "video.channels": 3,
        "has_audio": False,
    }

    schema = pq.read_schema(dummy_root / "data/chunk-000/file-000.parquet")
    assert schema.names == [
        "action", "observation.state", "observation.images.wrist",
        "timestamp", "frame_index", "episode_index", "index", "task_index",
    ]  # fmt: skip
    assert schema.field("action").type.equals(pa.list_(pa.float32(), 6), check_metadata=False)
    assert schema.field("timestamp").type == pa.float32()
    assert all(
        schema.field(k).type == pa.int64()
        for k in ("frame_index", "episode_index", "index", "task_index")
    )
    image_type = schema.field("observation.images.wrist").type
    assert [(f.name, f.type) for f in image_type] == [("bytes", pa.binary()), ("path", pa.string())]
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["observation.images.wrist"] == {"_type": "Image"}
    assert hf["action"]["_type"] == "List" and hf["action"]["length"] == 6

    episodes = pq.read_table(dummy_root / "meta/episodes/chunk-000/file-000.parquet")
    key = "videos/observation.images.top"
    expected = [
        "episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
        "dataset_from_index", "dataset_to_index", f"{key}/chunk_index", f"{key}/file_index",
        f"{key}/from_timestamp", f"{key}/to_timestamp",
    ]  # fmt: skip
    assert episodes.column_names[: len(expected)] == expected
    assert episodes.column_names[-2:] == ["meta/episodes/chunk_index", "meta/episodes/file_index"]
    assert episodes.schema.field("tasks").type.value_type == pa.string()
    assert episodes.schema.field(f"{key}/from_timestamp").type == pa.float64()
    assert (
        "stats/action/q99" in episodes.column_names and "stats/index/mean" in episodes.column_names
    )
    frame = episodes.to_pandas()
    assert list(frame["dataset_from_index"]) == [0, 20, 37]
    np.testing.assert_allclose(frame[f"{key}/from_timestamp"], [0.0, 2.0, 3.7])

    tasks = pd.read_parquet(dummy_root / "meta/tasks.parquet")
    assert list(tasks.index) == [TASKS[0], TASKS[1]] and list(tasks["task_index"]) == [0, 1]
    assert (
        pq.read_schema(dummy_root / "meta/tasks.parquet").field("__index_level_0__").type
        == pa.string()
    )


def test_stats_json_layout_and_values(dummy_root: Path, dummy_data: list[dict]):
    stats = json.loads((dummy_root / "meta/stats.json").read_text())
    keys = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert set(stats) == set(FEATURES) | {
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    }
    assert all(set(value) == keys for value in stats.values())
    actions = np.concatenate([e["action"] for e in dummy_data]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0))
    np.testing.assert_allclose(stats["action"]["q10"], np.quantile(actions, 0.1, axis=0))
    assert stats["action"]["count"] == [60] and stats["index"]["max"] == [59]
    image = np.asarray(stats["observation.images.top"]["mean"])
    assert image.shape == (3, 1, 1)
    pixels = np.concatenate([e["observation.images.top"] for e in dummy_data]) / 255.0
    np.testing.assert_allclose(image.ravel(), pixels.mean(axis=(0, 1, 2)))
    assert np.asarray(stats["observation.images.wrist"]["q50"]).shape == (3, 1, 1)


def test_files_roll_over_at_the_size_limits(tmp_path: Path, dummy_data: list[dict]):
    root = write_dataset(
        tmp_path / "rolled",
        dummy_data,
        chunks_size=2,
        data_files_size_in_mb=1e-4,
        video_files_size_in_mb=1e-4,
    )
    data_files = sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*.parquet"))
    assert data_files == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-001/file-000.parquet",
    ]
    assert len(list((root / "videos").rglob("*.mp4"))) == 3
    dataset = open_dataset(root)
    assert list(dataset.episodes["data/chunk_index"]) == [0, 0, 1]
    assert list(dataset.episodes["videos/observation.images.top/from_timestamp"]) == [0.0, 0.0, 0.0]
    for episode, frames in zip(dataset.iter_episodes(), dummy_data, strict=True):
        np.testing.assert_array_equal(episode.action, frames["action"])
    assert round((float(dataset.frame(37, "observation.images.top").mean()) - 10) / 3) == 37


def test_reads_lerobot_extras_and_split_episode_metadata(tmp_path: Path, dummy_root: Path):
    root = copy_of(dummy_root, tmp_path)
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    episodes = pd.read_parquet(meta)
    episodes["meta/episodes/file_index"] = [0, 1, 1]
    episodes.iloc[:1].to_parquet(meta)
    episodes.iloc[1:].to_parquet(meta.with_name("file-001.parquet"))
    data = root / "data/chunk-000/file-000.parquet"
    frames = pd.read_parquet(data)
    frames["next.done"] = frames["frame_index"] == frames.groupby("episode_index")[
        "frame_index"
    ].transform("max")
    frames.to_parquet(data)
    dataset = open_dataset(root)
    assert dataset.num_episodes == 3
    assert dataset.episode_table(2)["next.done"].sum() == 1
    assert round((float(dataset.frame(45, "observation.images.top").mean()) - 10) / 3) == 45


def test_truncated_parquet_names_file_and_episode(tmp_path: Path, dummy_root: Path):
    root = copy_of(dummy_root, tmp_path)
    data = root / "data/chunk-000/file-000.parquet"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    dataset = open_dataset(root)
    with pytest.raises(
        LeRobotFormatError, match=r"data/chunk-000/file-000\.parquet.*truncated.*episode 1"
    ):
        dataset.episode_table(1)


def test_corrupt_mp4_names_episode_and_frame(tmp_path: Path, dummy_root: Path):
    root = copy_of(dummy_root, tmp_path)
    video = root / "videos/observation.images.top/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[:200])
    dataset = open_dataset(root)
    with pytest.raises(
        LeRobotFormatError, match=r"episode 1, frame 4 of observation\.images\.top.*file-000\.mp4"
    ):
        dataset.frame(24, "observation.images.top")
    with pytest.raises(LeRobotFormatError, match=r"episode 2, frame 0 "):
        dataset.episode(2)


def test_garbled_packets_name_the_first_bad_frame(tmp_path: Path, dummy_root: Path):
    root = copy_of(dummy_root, tmp_path)
    video = root / "videos/observation.images.top/chunk-000/file-000.mp4"
    with av.open(str(video)) as container:  # byte ranges of episode 1's frames 5.. (t >= 2.5 s)
        spans = [
            (p.pos, p.size)
            for p in container.demux(video=0)
            if p.size and 2.45 < float(p.pts * p.time_base) < 3.65
        ]
    data = bytearray(video.read_bytes())
    for position, size in spans:
        data[position : position + size] = b"\xff" * size
    video.write_bytes(bytes(data))
    dataset = open_dataset(root)
    assert dataset.episode_frames(0, "observation.images.top").shape == (LENGTHS[0], SIZE, SIZE, 3)
    with pytest.raises(
        LeRobotFormatError, match=r"episode 1, frame [56] of observation\.images\.top"
    ):
        dataset.episode_frames(1, "observation.images.top")


def test_missing_meta_files_are_named(tmp_path: Path, dummy_root: Path):
    root = copy_of(dummy_root, tmp_path)
    (root / "meta/tasks.parquet").unlink()
    with pytest.raises(LeRobotFormatError, match=r"meta/tasks\.parquet is missing"):
        open_dataset(root)
    (root / "meta/info.json").unlink()
    with pytest.raises(LeRobotFormatError, match=r"missing meta/info\.json"):
        open_dataset(root)


def test_writer_refuses_existing_dataset_and_bad_frames(
    tmp_path: Path, dummy_root: Path, dummy_data: list[dict]
):
    with pytest.raises(FileExistsError, match="not empty"):
        LeRobotV3Writer(dummy_root, "tests/tiny", fps=10, features=FEATURES)
    writer = LeRobotV3Writer(tmp_path / "bad", "tests/bad", fps=10, features=FEATURES)
    wrong_width = {**dummy_data[0], "action": dummy_data[0]["action"][:, :5]}
    with pytest.raises(ValueError, match=r"action must be \[T, 6\]"):
        writer.add_episode(wrong_width, "task")
    nan_action = {**dummy_data[0], "action": dummy_data[0]["action"].copy()}
    nan_action["action"][7, 2] = np.nan
    with pytest.raises(ValueError, match="action is NaN/inf at frame 7"):
        writer.add_episode(nan_action, "task")
    with pytest.raises(ValueError, match="missing"):
        writer.add_episode({"action": dummy_data[0]["action"]}, "task")
    with pytest.raises(ValueError, match="non-empty string"):
        writer.add_episode(dummy_data[0], "")


def test_hub_id_without_hub_access_says_to_pass_a_local_root():
    with pytest.raises(LeRobotFormatError, match="pass its local root"):
        open_dataset("lerobot/no_such_dataset_for_tests")
    with pytest.raises(LeRobotFormatError, match="does not exist"):
        open_dataset(Path("/nonexistent/lerobot/root"))


def test_video_encoder_fallback_is_logged_and_recorded(
    tmp_path: Path, dummy_data: list[dict], caplog
):
    with caplog.at_level(logging.WARNING):
        assert pick_video_codec("no-such-encoder") in ("libaom-av1", "libx264")
    assert "falling back" in caplog.text
    root = write_dataset(tmp_path / "h264", dummy_data, vcodec="libx264")
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.images.top"]["info"]["video.codec"] == "h264"
    assert (
        round((float(open_dataset(root).frame(20, "observation.images.top").mean()) - 10) / 3) == 20
    )
