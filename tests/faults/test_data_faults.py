"""Data-side faults, each injected into a small dataset or store built on the fly.

Every bad input ends as a clear error naming the dataset, episode, file or option, or (with
`on_error: skip`) as a counted skip in the ingest report; shared outputs are replaced whole, and
two writers of one store or one stage never corrupt each other.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.io import DatasetError
from kedro.io.core import Version
from mlflow.tracking import MlflowClient

from drifting_kedro.action_space import get_spec
from drifting_kedro.datasets import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicParquetDataset,
    MediaFolderDataset,
)
from drifting_kedro.features.frames import FrameStore, FrameStoreWriter
from drifting_kedro.ingest import ingest_sources
from drifting_kedro.locking import DataLock, DataLockTimeout
from drifting_kedro.pipelines import ingest as ingest_pipeline
from drifting_kedro.pipelines import train as train_pipeline
from drifting_kedro.sources import SourceConfig
from drifting_kedro.sources.base import Episode
from drifting_kedro.sources.lerobot_v3 import LeRobotFormatError, LeRobotV3Writer
from drifting_kedro.sources.validation import InvalidEpisodeError, SkipCounter, validate_episode
from drifting_kedro.stage_locks import StageLockHooks

PROJECT = Path(__file__).resolve().parents[2]
NAMES = list(get_spec("aloha").action_names)
TOP = "observation.images.top"
TASKS = ("Transfer the cube to the left arm.", "Hand the cube back.")
DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"


# --------------------------------------------------------------------------------------------
# Building and breaking a small LeRobot dataset (the `aloha` layout: 14-D action and state)
# --------------------------------------------------------------------------------------------


def write_aloha(root: Path, lengths=(6, 6, 6, 6), camera: str = "image") -> Path:
    features = {
        "action": {"dtype": "float32", "shape": [14], "names": NAMES},
        "observation.state": {"dtype": "float32", "shape": [14], "names": NAMES},
        TOP: {"dtype": camera, "shape": [16, 16, 3], "names": ["height", "width", "channels"]},
    }
    rng = np.random.default_rng(0)
    with LeRobotV3Writer(root, "test/aloha", 50, features, robot_type="aloha") as writer:
        for i, length in enumerate(lengths):
            action = rng.normal(size=(length, 14)).astype(np.float32)
            frames = rng.integers(0, 255, (length, 16, 16, 3), np.uint8)
            writer.add_episode(
                {"action": action, "observation.state": action, TOP: frames}, TASKS[i % 2]
            )
    return root


def edit_parquet(path: Path, change) -> None:
    table = change(pq.read_table(path).to_pandas())
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)


def edit_info(root: Path, change) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


def edit_episode_rows(root: Path, episode: int, column: str, values) -> None:
    def change(table: pd.DataFrame) -> pd.DataFrame:
        rows = table["episode_index"] == episode
        table.loc[rows, column] = values(table.loc[rows, column].to_numpy())
        return table

    edit_parquet(root / DATA_FILE, change)


def shorten_episode(root: Path, episode: int, length: int) -> None:
    """Keep the first `length` frames of `episode` in the data and say so in its metadata."""

    def data(table: pd.DataFrame) -> pd.DataFrame:
        keep = (table["episode_index"] != episode) | (table["frame_index"] < length)
        return table[keep]

    def meta(table: pd.DataFrame) -> pd.DataFrame:
        row = table["episode_index"] == episode
        table.loc[row, "length"] = length
        table.loc[row, "dataset_to_index"] = table.loc[row, "dataset_from_index"] + length
        return table

    edit_parquet(root / DATA_FILE, data)
    edit_parquet(root / EPISODES_FILE, meta)


def ingest(tmp_path: Path, root: Path, on_error: str = "raise"):
    source = SourceConfig(name="aloha", kind="lerobot_v3", root=str(root))
    return ingest_sources([source], tmp_path / "frames", 16, on_error, val_fraction=0.25)


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    return write_aloha(tmp_path_factory.mktemp("aloha") / "aloha")


@pytest.fixture
def root(clean_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean_root, tmp_path / "aloha"))


# --------------------------------------------------------------------------------------------
# Errors that name what to fix, and skips that are counted under the right reason
# --------------------------------------------------------------------------------------------


def test_zero_frame_episode_is_named_when_raising(tmp_path, root):
    shorten_episode(root, 1, 0)
    with pytest.raises(InvalidEpisodeError, match=r"dataset 'aloha' episode 1 \(data/.*has zero"):
        ingest(tmp_path, root)


def test_zero_frame_episode_is_a_counted_skip(tmp_path, root):
    shorten_episode(root, 1, 0)
    episodes, manifest = ingest(tmp_path, root, on_error="skip")
    assert manifest["aloha"]["skipped"] == {"zero_frames": 1}
    assert sorted(episodes["episode_index"].unique()) == [0, 2, 3]


def test_camera_missing_from_info_json_names_the_file_and_camera(tmp_path, root):
    edit_info(root, lambda info: info["features"].pop(TOP))
    with pytest.raises(LeRobotFormatError, match=r"meta/info\.json has no RGB camera feature") as e:
        ingest(tmp_path, root, on_error="skip")  # a dataset-wide fault is not an episode's skip
    assert f"'{TOP}'" in str(e.value) and "'aloha'" in str(e.value)


def test_empty_task_text_is_missing_language(tmp_path, root):
    tasks = pd.read_parquet(root / "meta/tasks.parquet")  # index: the task text
    tasks.index = ["" if task == TASKS[1] else task for task in tasks.index]
    tasks.to_parquet(root / "meta/tasks.parquet")
    with pytest.raises(InvalidEpisodeError, match=r"episode 1 .*task_index 1 is empty in") as e:
        ingest(tmp_path, root)
    assert e.value.reason == "missing_language"
    episodes, manifest = ingest(tmp_path, root, on_error="skip")
    assert manifest["aloha"]["skipped"] == {"missing_language": 2}
    assert sorted(episodes["episode_index"].unique()) == [0, 2]


def test_one_frame_episode_is_too_short_not_a_val_episode(tmp_path, root):
    shorten_episode(root, 3, 1)  # the last episode: the one the split would hold out
    with pytest.raises(InvalidEpisodeError, match=r"'aloha' episode 3: has 1 frame") as e:
        ingest(tmp_path, root)
    assert e.value.reason == "too_short"
    episodes, manifest = ingest(tmp_path, root, on_error="skip")
    assert manifest["aloha"]["skipped"] == {"too_short": 1}
    assert set(episodes.loc[episodes["split"] == "val", "episode_index"]) == {2}


@pytest.mark.parametrize(
    "timestamps", [lambda t: t[::-1].copy(), np.zeros_like], ids=["reversed", "all_zero"]
)
def test_bad_timestamps(tmp_path, root, timestamps):
    edit_episode_rows(root, 2, "timestamp", timestamps)
    with pytest.raises(InvalidEpisodeError, match=r"'aloha' episode 2 .*timestamps must") as e:
        ingest(tmp_path, root)
    assert e.value.reason == "bad_timestamps"
    _, manifest = ingest(tmp_path, root, on_error="skip")
    assert manifest["aloha"]["skipped"] == {"bad_timestamps": 1}


def test_shuffled_frame_index(tmp_path, root):
    edit_episode_rows(root, 0, "frame_index", lambda f: f[[1, 0, 2, 3, 4, 5]])
    with pytest.raises(InvalidEpisodeError, match=r"episode 0 .*row 0 holds frame_index 1") as e:
        ingest(tmp_path, root)
    assert e.value.reason == "bad_frame_index"
    _, manifest = ingest(tmp_path, root, on_error="skip")
    assert manifest["aloha"]["skipped"] == {"bad_frame_index": 1}


def test_info_json_without_action_feature(tmp_path, root):
    edit_info(root, lambda info: info["features"].pop("action"))
    with pytest.raises(LeRobotFormatError, match=r"'aloha' .*meta/info\.json has no 'action'"):
        ingest(tmp_path, root, on_error="skip")


def test_missing_camera_in_one_episode_is_counted(tmp_path):
    """Sources other than LeRobot may lose a view in one episode: a skip, not a crash."""
    episode = Episode(
        dataset="aloha",
        episode_index=4,
        language="Transfer the cube.",
        fps=50.0,
        action=np.zeros((3, 14), np.float32),
        state=np.zeros((3, 14), np.float32),
        images={},
    )
    counter = SkipCounter()
    assert not validate_episode(episode, "skip", counter, cameras=[TOP])
    assert counter.by_reason == {"missing_camera": 1}
    with pytest.raises(InvalidEpisodeError, match=r"episode 4: has no camera \['observation"):
        validate_episode(episode, "raise", cameras=[TOP])


# --------------------------------------------------------------------------------------------
# Paths: a dataset never reads outside its root; the media folder never deletes outside data/
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_data_path_outside_the_root_is_refused(tmp_path, root, kind):
    other = Path(shutil.copytree(root, tmp_path / "other"))
    template = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    path = f"{other}/{template}" if kind == "absolute" else f"../other/{template}"
    edit_info(root, lambda info: info.update(data_path=path))
    with pytest.raises(LeRobotFormatError, match=r"data_path .* outside the dataset root"):
        ingest(tmp_path, root, on_error="skip")


def test_video_path_outside_the_root_is_refused(tmp_path):
    root = write_aloha(tmp_path / "aloha", lengths=(3, 3), camera="video")
    edit_info(root, lambda info: info.update(video_path="/" + info["video_path"]))
    with pytest.raises(LeRobotFormatError, match=r"video_path .* outside the dataset root"):
        ingest(tmp_path, root)


def test_media_folder_replaces_only_folders_below_a_data_layer(tmp_path):
    data = tmp_path / "data"
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "thesis.tex").write_text("years of work")
    for path in (keep, data, data / "08_reporting", tmp_path / "data/../precious"):
        media = MediaFolderDataset(path=str(path), data_dir=str(data))
        with pytest.raises(DatasetError) as e:
            media.save({"a.mp4": b"new"})
        assert isinstance(e.value.__cause__, ValueError)
        assert "will not replace" in str(e.value) and "catalog.yml" in str(e.value)
    assert (keep / "thesis.tex").read_text() == "years of work"
    videos = MediaFolderDataset(path=str(data / "08_reporting/videos"), data_dir=str(data))
    videos.save({"old.mp4": b"old"})
    videos.save({"cam/new.mp4": b"new"})
    assert list(videos.load()) == ["cam/new.mp4"]


# --------------------------------------------------------------------------------------------
# Atomic outputs: a save that fails halfway leaves the previous file whole
# --------------------------------------------------------------------------------------------


class FailsHalfway:
    """Data whose writer puts out a few bytes, then fails (a full disk, a killed conversion)."""

    def _fail(self, *args, **kwargs):
        target = args[0] if args else kwargs["path_or_buf"]
        target.write(b"PAR1 partial" if "b" in target.mode else "partial")
        raise OSError("No space left on device")

    to_parquet = to_csv = _fail


FRAME = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
SAVES = {
    "parquet_bad_column": (
        lambda folder: AtomicParquetDataset(filepath=str(folder / "t.parquet")),
        FRAME,
        pd.DataFrame({"a": [1.0, 2.0], "b": ["x", object()]}),
    ),
    "parquet_disk_full": (
        lambda folder: AtomicParquetDataset(filepath=str(folder / "t.parquet")),
        FRAME,
        FailsHalfway(),
    ),
    "csv_disk_full": (
        lambda folder: AtomicCSVDataset(filepath=str(folder / "t.csv")),
        FRAME,
        FailsHalfway(),
    ),
    "json_bad_value": (
        lambda folder: AtomicJSONDataset(filepath=str(folder / "t.json")),
        {"datasets": ["aloha"], "frames": 2},
        {"datasets": ["aloha"], "frames": object()},
    ),
}


@pytest.mark.parametrize("case", sorted(SAVES))
def test_failed_save_keeps_the_previous_file(tmp_path, case):
    make, good, bad = SAVES[case]
    dataset = make(tmp_path)
    dataset.save(good)
    with pytest.raises(DatasetError):
        dataset.save(bad)
    loaded = dataset.load()
    if isinstance(good, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, good)
    else:
        assert loaded == good
    assert len(list(tmp_path.iterdir())) == 1  # no temporary file left behind


def test_failed_versioned_save_leaves_no_half_written_version(tmp_path):
    dataset = AtomicJSONDataset(filepath=str(tmp_path / "s.json"), version=Version(None, "v1"))
    with pytest.raises(DatasetError):
        dataset.save({"mean": object()})
    assert list((tmp_path / "s.json/v1").iterdir()) == []


def test_failed_media_save_keeps_the_previous_folder(tmp_path):
    data = tmp_path / "data"
    media = MediaFolderDataset(path=str(data / "08_reporting/plots"), data_dir=str(data))
    media.save({"a.png": b"old"})
    with pytest.raises(DatasetError):
        media.save({"b.png": b"new", "c.png": "not bytes"})
    assert {name: path.read_bytes() for name, path in media.load().items()} == {"a.png": b"old"}
    assert os.listdir(data / "08_reporting") == ["plots"]


def test_crashed_frame_store_write_keeps_the_previous_store(tmp_path):
    path = tmp_path / "f.h5"
    with FrameStoreWriter(path, "toy_sim", ["top"], 12) as writer:
        writer.add_episode(_episode(0, 3, seed=0))
    before = FrameStore(path).version
    with pytest.raises(RuntimeError), FrameStoreWriter(path, "toy_sim", ["top"], 12) as writer:
        writer.add_episode(_episode(0, 5, seed=1))
        raise RuntimeError("ingest crashed")
    assert FrameStore(path).version == before and len(FrameStore(path)) == 3
    assert os.listdir(tmp_path) == ["f.h5"]


# --------------------------------------------------------------------------------------------
# Two processes: writers of one frame store, holders of one stage lock
# --------------------------------------------------------------------------------------------


def _episode(index: int, length: int, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        dataset="toy_sim",
        episode_index=index,
        language="pick up the cube",
        fps=50.0,
        action=np.zeros((length, 4), np.float32),
        state=np.zeros((length, 4), np.float32),
        images={"top": rng.integers(0, 256, (length, 24, 24, 3), dtype=np.uint8)},
    )


# A writer in another process: half a store, then (when its stdin closes) the rest.
WRITER = """
import sys
import numpy as np
from drifting_kedro.features.frames import FrameStoreWriter
from drifting_kedro.sources.base import Episode

path, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
def episode(index):
    images = {"top": rng.integers(0, 256, (40, 24, 24, 3), dtype=np.uint8)}
    zeros = np.zeros((40, 4), np.float32)
    return Episode("toy_sim", index, "pick up the cube", 50.0, zeros, zeros, images)
writer = FrameStoreWriter(path, "toy_sim", ["top"], 24)
writer.add_episode(episode(0))
print("halfway", flush=True)
sys.stdin.read()
writer.add_episode(episode(1))
writer.close()
"""

# Another process holding a lock until its stdin closes.
HOLDER = """
import sys
from drifting_kedro.locking import DataLock
with DataLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def start_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_two_writers_of_one_frame_store_leave_every_store_readable(tmp_path):
    path = tmp_path / "frames.h5"
    with FrameStoreWriter(path, "toy_sim", ["top"], 24) as writer:
        for i in range(2):
            writer.add_episode(_episode(i, 40, 100 + i))
    reader = FrameStore(path)
    first = reader.images_batch(range(80))  # the reader now holds the file open

    writers = [start_python(WRITER, str(path), str(seed)) for seed in (0, 10)]
    for process in writers:  # both are halfway through the same store at once
        assert process.stdout.readline() == "halfway\n", process.communicate()[1]
    results = [process.communicate(input="", timeout=120) for process in writers]
    assert [p.returncode for p in writers] == [0, 0], [err[-2000:] for _, err in results]

    assert all(np.array_equal(reader.images(i), first[i]) for i in range(80))  # the old file
    rebuilt = FrameStore(path)
    assert len(rebuilt) == 80 and rebuilt.images_batch(range(80)).shape == (80, 1, 3, 24, 24)
    assert sorted(os.listdir(tmp_path)) == ["frames.h5"]
    reader.close()  # its next lazy open (e.g. in a data-loader worker) finds another store
    with pytest.raises(RuntimeError, match="was rewritten since it was opened"):
        reader.images(0)


def test_second_holder_of_a_stage_lock_waits_or_stops_naming_the_holder(tmp_path, caplog):
    path = tmp_path / "data/.locks/ingest.lock"
    holder = start_python(HOLDER, str(path))
    try:
        assert holder.stdout.readline() == "held\n", holder.communicate()[1]
        with pytest.raises(DataLockTimeout) as e:
            DataLock(path, timeout=0).acquire()
        assert str(path) in str(e.value) and f"held by pid {holder.pid} (" in str(e.value)
        with pytest.raises(DataLockTimeout, match=r"gave up after 0\.3 s"):
            DataLock(path, timeout=0.3).acquire()

        waiting = DataLock(path, timeout=60)
        threading.Timer(1.0, holder.stdin.close).start()
        with caplog.at_level(logging.INFO, logger="drifting_kedro.locking"):
            start = time.monotonic()
            waiting.acquire()
        assert time.monotonic() - start >= 0.5
        assert f"held by pid {holder.pid}" in caplog.text and "waiting" in caplog.text
        assert json.loads(path.read_text())["pid"] == os.getpid()
        waiting.release()
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_stage_hooks_lock_the_stages_that_rewrite_shared_files(tmp_path):
    hooks = StageLockHooks()
    hooks.before_pipeline_run({"project_path": str(tmp_path)})
    (ingest_node,) = ingest_pipeline.create_pipeline().only_nodes("ingest_episodes_node").nodes
    (train_node,) = train_pipeline.create_pipeline().nodes
    lock = tmp_path / "data/.locks/ingest.lock"
    hooks.before_node_run(ingest_node)
    hooks.before_node_run(train_node)  # versioned outputs only: never waits
    with pytest.raises(DataLockTimeout, match=f"held by pid {os.getpid()}"):
        DataLock(lock, timeout=0).acquire()
    assert sorted(p.name for p in lock.parent.iterdir()) == ["ingest.lock"]
    hooks.on_node_error(ingest_node)  # a failed node frees its stage too
    with DataLock(lock, timeout=0):
        pass


# --------------------------------------------------------------------------------------------
# Two `kedro run`s of one stage in one project folder
# --------------------------------------------------------------------------------------------


def kedro_project(tmp_path: Path, dataset: Path) -> Path:
    """A copy of the project's configuration (the package is the installed one) on `dataset`."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT / "pyproject.toml", project)
    shutil.copytree(PROJECT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf/local").mkdir()
    (project / "src").mkdir()
    (project / "conf/faults").mkdir()
    (project / "conf/faults/parameters_ingest.yml").write_text(
        json.dumps(
            {
                "demonstrations": [],
                "ingest": {
                    "sources": [{"name": "aloha", "kind": "lerobot_v3", "root": str(dataset)}],
                    "frames_dir": "data/02_intermediate/frames",
                    "image_size": 16,
                    "on_error": "raise",
                    "val_fraction": 0.25,
                },
                "data_videos": {"episodes": 1, "width": 64},
            }
        )
    )
    # Runs starting side by side would race to create MLflow's tables and experiment.
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    client.create_experiment("drifting_kedro")
    return project


def start_ingest(project: Path, log: Path, **env: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "kedro", "run", "--env=faults", "--pipeline=ingest"]
    environment = {**os.environ, "COLUMNS": "1000", "OMP_NUM_THREADS": "1", **env}
    with open(log, "w") as output:
        return subprocess.Popen(
            command, cwd=project, stdout=output, stderr=subprocess.STDOUT, env=environment
        )


@pytest.mark.slow
def test_second_kedro_run_of_a_stage_waits_or_stops_and_the_first_stays_readable(tmp_path):
    project = kedro_project(tmp_path, write_aloha(tmp_path / "aloha", lengths=(8, 8, 8, 8)))
    lock_path = project / "data/.locks/ingest.lock"
    with DataLock(lock_path) as lock:  # a first run, in the middle of its ingest
        stopped = start_ingest(project, tmp_path / "stopped.log", DRIFTING_KEDRO_LOCK_TIMEOUT="0")
        waiting = [start_ingest(project, tmp_path / f"waiting{i}.log") for i in range(2)]
        assert stopped.wait(timeout=300) != 0
        text = (tmp_path / "stopped.log").read_text()
        assert str(lock_path) in text and f"held by pid {os.getpid()} (" in text, text[-3000:]
        assert "Error: " in text and "Traceback" not in text, text[-3000:]  # one clear line
        deadline = time.monotonic() + 300
        logs = [tmp_path / f"waiting{i}.log" for i in range(2)]
        while not all("waiting for it to finish" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
            assert all(run.poll() is None for run in waiting)
            time.sleep(0.5)
        assert not (project / "data/03_primary/episodes.parquet").exists()
        lock.release()
        assert [run.wait(timeout=300) for run in waiting] == [0, 0], [
            log.read_text()[-3000:] for log in logs
        ]
    episodes = pd.read_parquet(project / "data/03_primary/episodes.parquet")
    assert len(episodes) == 32
    store = FrameStore(project / "data/02_intermediate/frames/aloha.h5")
    assert store.images_batch(range(len(store))).shape == (32, 1, 3, 16, 16)
    leftovers = [p for p in (project / "data").rglob(".*.tmp")]
    assert leftovers == []
