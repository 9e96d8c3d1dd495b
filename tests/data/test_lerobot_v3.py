"""LeRobot v3 writer/reader: round trip, exact-timestamp frames, lerobot's layout, clear errors."""

import json
import logging
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_video import top_level_boxes  # tests/data is on the path of its own tests

from drifting_kedro.sources import SourceConfig, iter_source_episodes
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


STAT_NAMES = ["min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"]
DEFAULT_KEYS = ["timestamp", "frame_index", "episode_index", "index", "task_index"]


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


def test_files_are_the_ones_lerobot_writes(dummy_root: Path):
    files = {p.relative_to(dummy_root).as_posix() for p in dummy_root.rglob("*") if p.is_file()}
    assert files == {
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
        "videos/observation.images.top/chunk-000/file-000.mp4",
    }
    # Three episodes share the mp4: lerobot's concatenation puts the moov box first.
    boxes = top_level_boxes(dummy_root / "videos/observation.images.top/chunk-000/file-000.mp4")
    assert boxes.index("moov") < boxes.index("mdat"), boxes


def test_info_json_is_lerobot_06s(dummy_root: Path):
    info = json.loads((dummy_root / "meta/info.json").read_text())
    # lerobot 0.6 DatasetInfo fields in their order, with its default storage settings.
    assert list(info) == [
        "codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
        "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "data_path",
        "video_path", "robot_type", "splits",
    ]  # fmt: skip
    storage = ("chunks_size", "data_files_size_in_mb", "video_files_size_in_mb")
    assert [info[key] for key in storage] == [1000, 100, 200]
    assert info["codebase_version"] == "v3.0" and info["splits"] == {"train": "0:3"}
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 60, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert (
        info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    assert list(info["features"])[-5:] == DEFAULT_KEYS
    assert info["features"]["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    assert info["features"]["observation.images.top"]["info"] == {
        "video.height": SIZE,
        "video.width": SIZE,
        "video.codec": "av1",
        "video.pix_fmt": "yuv420p",
        "video.fps": 10,
        "video.channels": 3,
        "has_audio": False,
        "video.g": 2,
        "video.crf": 30,
        "video.preset": 12,
        "video.fast_decode": 0,
        "video.video_backend": "pyav",
        "video.extra_options": {},
        "is_depth_map": False,
    }


def test_data_parquet_schema_and_huggingface_metadata(dummy_root: Path):
    path = dummy_root / "data/chunk-000/file-000.parquet"
    schema = pq.read_schema(path)
    assert schema.names == [
        "action",
        "observation.state",
        "observation.images.wrist",
        *DEFAULT_KEYS,
    ]
    assert schema.field("action").type.equals(pa.list_(pa.float32(), 6), check_metadata=False)
    assert schema.field("timestamp").type == pa.float32()
    image_type = schema.field("observation.images.wrist").type
    assert [(f.name, f.type) for f in image_type] == [("bytes", pa.binary()), ("path", pa.string())]
    # datasets 4's JSON for these features, as in lerobot 0.6.1's file, then its fingerprint.
    hf = schema.metadata[b"huggingface"].decode()
    value = '{"dtype": "%s", "_type": "Value"}'
    vector = '{"feature": %s, "length": 6, "_type": "List"}' % (value % "float32")
    defaults = ", ".join(f'"{key}": {value % "int64"}' for key in DEFAULT_KEYS[1:])
    assert hf.startswith(
        f'{{"info": {{"features": {{"action": {vector}, "observation.state": {vector}, '
        f'"observation.images.wrist": {{"_type": "Image"}}, "timestamp": {value % "float32"}, '
        f'{defaults}}}}}, "fingerprint": "'
    ), hf
    assert re.fullmatch(r"[0-9a-f]{16}", json.loads(hf)["fingerprint"])
    cells = pq.read_table(path).column("observation.images.wrist").to_pylist()
    assert [cells[i]["path"] for i in (0, 1, 20)] == [
        "frame-000000.png",
        "frame-000001.png",
        "frame-000000.png",
    ]


def test_episodes_parquet_columns_in_lerobots_order(dummy_root: Path):
    episodes = pq.read_table(dummy_root / "meta/episodes/chunk-000/file-000.parquet")
    key = "videos/observation.images.top"
    stats = [f"stats/{name}/{stat}" for name in [*FEATURES, *DEFAULT_KEYS] for stat in STAT_NAMES]
    assert episodes.column_names == [
        "episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
        "dataset_from_index", "dataset_to_index", f"{key}/chunk_index", f"{key}/file_index",
        f"{key}/from_timestamp", f"{key}/to_timestamp", *stats,
        "meta/episodes/chunk_index", "meta/episodes/file_index",
    ]  # fmt: skip
    assert episodes.schema.field("tasks").type.value_type == pa.string()
    assert episodes.schema.field("stats/index/min").type == pa.list_(pa.float64())
    frame = episodes.to_pandas()
    assert list(frame["dataset_from_index"]) == [0, 20, 37]
    # lerobot adds episode durations in floating point: 2.0 + 1.7, then + 2.3.
    assert list(frame[f"{key}/from_timestamp"]) == [0.0, 2.0, 2.0 + 1.7]
    assert list(frame[f"{key}/to_timestamp"]) == [2.0, 2.0 + 1.7, 2.0 + 1.7 + 2.3]


def test_tasks_parquet_index_is_named_task(dummy_root: Path):
    schema = pq.read_schema(dummy_root / "meta/tasks.parquet")
    assert schema.names == ["task_index", "task"]
    assert schema.types == [pa.int64(), pa.string()]
    pandas_meta = json.loads(schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["task"]
    assert pandas_meta["column_indexes"][0]["numpy_type"] == "object"
    assert [(c["name"], c["pandas_type"], c["numpy_type"]) for c in pandas_meta["columns"]] == [
        ("task_index", "int64", "int64"),
        ("task", "unicode", "object"),
    ]
    tasks = pd.read_parquet(dummy_root / "meta/tasks.parquet")
    assert tasks.index.name == "task" and list(tasks.index) == [TASKS[0], TASKS[1]]
    assert list(tasks["task_index"]) == [0, 1]


def test_stats_are_the_numbers_lerobot_computes(dummy_root: Path, dummy_data: list[dict]):
    """Golden values from lerobot 0.6.1 recording the same frames: quantiles read off 5000-bin
    histograms per episode, dataset stats merged episode by episode."""
    stats = json.loads((dummy_root / "meta/stats.json").read_text())
    assert list(stats) == [*FEATURES, *DEFAULT_KEYS]
    assert all(list(value) == STAT_NAMES for value in stats.values())
    assert stats["index"]["q50"] == [29.3353633333316]  # the exact median is 29.5
    assert stats["index"]["q01"] == [19.8499999999]
    assert stats["timestamp"]["max"] == [2.2] and stats["timestamp"]["q01"] == [-1e-10]
    assert stats["episode_index"]["q50"] == [1.05000000000002]
    assert stats["action"]["count"] == [60]
    assert stats["action"]["q10"] == pytest.approx(
        [-1.5241522586345675, -1.225929636458556, -1.1614876548449198,
         -1.4811263207594554, -1.2699212815364203, -1.0194900451103845], rel=1e-6,
    )  # fmt: skip
    actions = np.concatenate([e["action"] for e in dummy_data]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-6)
    top = stats["observation.images.top"]
    assert np.asarray(top["mean"]).shape == (3, 1, 1) and top["count"] == [60]
    assert np.ravel(top["q01"]) == pytest.approx([0.2609818924598445] * 3, rel=1e-6)
    assert np.ravel(top["max"]) == pytest.approx([0.7490196228027344] * 3, rel=1e-7)
    episodes = pq.read_table(dummy_root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert episodes["stats/frame_index/q10"] == [
        [1.0031999999105599], [1.0006399999125077], [1.9989199999181717]
    ]  # fmt: skip
    assert episodes["stats/observation.images.top/count"] == [[20], [17], [23]]


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
    videos = sorted((root / "videos").rglob("*.mp4"))
    assert len(videos) == 3
    # A file of one episode is that episode's encode as lerobot moves it into place: moov last.
    boxes = top_level_boxes(videos[0])
    assert boxes.index("mdat") < boxes.index("moov"), boxes
    dataset = open_dataset(root)
    assert list(dataset.episodes["data/chunk_index"]) == [0, 0, 1]
    assert list(dataset.episodes["videos/observation.images.top/from_timestamp"]) == [0.0, 0.0, 0.0]
    for episode, frames in zip(dataset.iter_episodes(), dummy_data, strict=True):
        np.testing.assert_array_equal(episode.action, frames["action"])
    assert round((float(dataset.frame(37, "observation.images.top").mean()) - 10) / 3) == 37


def test_episode_rows_are_written_ten_at_a_time_and_roll_over(tmp_path: Path):
    """lerobot writes episode rows in groups of 10 and starts the next episodes file once the
    written one would pass data_files_size_in_mb: with a tiny limit, after the first group."""
    rng = np.random.default_rng(2)
    features = {
        "action": {"dtype": "float32", "shape": [2], "names": None},
        "observation.images.wrist": {"dtype": "image", "shape": [4, 4, 3], "names": None},
    }
    root = tmp_path / "many"
    lengths = [3 + i % 4 for i in range(12)]
    with LeRobotV3Writer(
        root, "tests/many", fps=10, features=features, chunks_size=2, data_files_size_in_mb=1e-3
    ) as writer:
        for i, length in enumerate(lengths):
            frames = {
                "action": rng.normal(size=(length, 2)).astype(np.float32),
                "observation.images.wrist": rng.integers(0, 256, (length, 4, 4, 3), np.uint8),
            }
            writer.add_episode(frames, f"task {i % 3}")
    meta = sorted(p.relative_to(root).as_posix() for p in (root / "meta/episodes").rglob("*.*"))
    assert meta == [
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-001.parquet",
    ]
    groups = [pq.ParquetFile(root / path).metadata.row_group(0).num_rows for path in meta]
    assert groups == [10, 2]
    assert len(list((root / "data").rglob("*.parquet"))) == 12  # one episode per data file
    dataset = open_dataset(root)
    assert list(dataset.episodes["meta/episodes/file_index"]) == [0] * 10 + [1] * 2
    assert list(dataset.episodes["data/chunk_index"]) == [i // 2 for i in range(12)]
    assert dataset.num_frames == sum(lengths)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("info", "is_depth_map"),  # lerobot 0.6
        ("info", "video.is_depth_map"),  # lerobot 0.4 and this module's earlier writer
        ("video_info", "video.is_depth_map"),  # older converted datasets
    ],
)
def test_depth_maps_are_never_read_as_rgb(tmp_path: Path, dummy_root: Path, section: str, key: str):
    root = copy_of(dummy_root, tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    top = info["features"]["observation.images.top"]
    del top["info"]["is_depth_map"]
    top.setdefault(section, {})[key] = True
    (root / "meta/info.json").write_text(json.dumps(info))
    assert open_dataset(root).camera_keys == ["observation.images.wrist"]
    with pytest.raises(LeRobotFormatError, match=r"\['observation\.images\.top'\] hold depth"):
        open_dataset(root, cameras=["observation.images.top"])


def aloha_source(root: Path, **options) -> SourceConfig:
    return SourceConfig(name="aloha", kind="lerobot_v3", root=str(root), options=options)


def test_sources_read_the_registry_cameras_unless_told_otherwise(dummy_root: Path):
    def views(source: SourceConfig) -> list[str]:
        return sorted(next(iter_source_episodes(source)).images)

    top, wrist = "observation.images.top", "observation.images.wrist"
    assert views(aloha_source(dummy_root)) == [top]  # the registry's camera of aloha
    assert views(aloha_source(dummy_root, cameras="all")) == [top, wrist]
    assert views(aloha_source(dummy_root, cameras=[wrist])) == [wrist]
    with pytest.raises(
        LeRobotFormatError,
        match=r"'aloha' .*\['observation\.images\.side'\].*its RGB cameras: "
        r"\['observation\.images\.top', 'observation\.images\.wrist'\]",
    ):
        views(aloha_source(dummy_root, cameras=["observation.images.side"]))
    with pytest.raises(ValueError, match=r"options\.cameras must be `all` or a list"):
        views(aloha_source(dummy_root, cameras="top"))
    with pytest.raises(ValueError, match=r"options has unknown keys \['camera'\]"):
        views(aloha_source(dummy_root, camera="all"))


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


def test_lerobot_writes_the_same_files(tmp_path: Path, dummy_root: Path, dummy_data: list[dict]):
    """lerobot 0.6 records the fixture's frames; with the same libraries (this test runs where
    lerobot is importable) every file but the data parquet's random fingerprint is equal."""
    lerobot = pytest.importorskip(
        "lerobot", reason="lerobot is not installable beside this project's torch"
    )
    if not lerobot.__version__.startswith("0.6."):
        pytest.skip(f"the writer follows lerobot 0.6, this is {lerobot.__version__}")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    reference = tmp_path / "lerobot"
    recorder = LeRobotDataset.create(
        "tests/tiny", fps=10, features=FEATURES, root=reference, robot_type="sim"
    )
    for frames, task in zip(dummy_data, TASKS, strict=True):
        for index in range(len(frames["action"])):
            recorder.add_frame({**{k: v[index] for k, v in frames.items()}, "task": task})
        recorder.save_episode()
    recorder.finalize()

    ours = {p.relative_to(dummy_root).as_posix() for p in dummy_root.rglob("*") if p.is_file()}
    theirs = {p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file()}
    assert ours == theirs
    for name in sorted(ours - {"meta/stats.json", "data/chunk-000/file-000.parquet"}):
        assert (dummy_root / name).read_bytes() == (reference / name).read_bytes(), name
    # lerobot orders stats.json by a Python set, which changes from run to run.
    stats = [json.loads((root / "meta/stats.json").read_text()) for root in (dummy_root, reference)]
    assert stats[0] == stats[1]
    data = [
        pq.read_table(root / "data/chunk-000/file-000.parquet") for root in (dummy_root, reference)
    ]
    assert data[0].equals(data[1])
    hf = [json.loads(table.schema.metadata[b"huggingface"]) for table in data]
    assert [{**h, "fingerprint": ""} for h in hf] == [
        {"info": hf[1]["info"], "fingerprint": ""}
    ] * 2
