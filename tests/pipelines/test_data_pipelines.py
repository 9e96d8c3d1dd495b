"""Ingest → action mapping → normalization on a small LeRobot v3 dataset, good and bad."""

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from drifting_kedro.action_space import UnknownDatasetError, from_unified, get_spec
from drifting_kedro.pipelines import action_mapping, ingest, normalization
from drifting_kedro.pipelines.ingest.nodes import render_data_videos
from drifting_kedro.sources.lerobot_v3 import LeRobotV3Writer
from drifting_kedro.sources.validation import InvalidEpisodeError

NAMES = list(get_spec("aloha").action_names)


def write_aloha_like(root: Path, nan_episode: int | None = None) -> Path:
    """Four 12-frame episodes in the `aloha` layout; one may carry a NaN action at frame 5.

    The writer refuses NaN, so the bad value is written into the data parquet afterwards, as a
    broken upstream converter would leave it.
    """
    features = {
        "action": {"dtype": "float32", "shape": [14], "names": NAMES},
        "observation.state": {"dtype": "float32", "shape": [14], "names": NAMES},
        "observation.images.top": {
            "dtype": "video",
            "shape": [32, 32, 3],
            "names": ["height", "width", "channels"],
        },
    }
    rng = np.random.default_rng(0)
    with LeRobotV3Writer(root, "test/aloha", 50, features, robot_type="aloha") as writer:
        for _ in range(4):
            action = rng.normal(size=(12, 14)).astype(np.float32)
            writer.add_episode(
                {
                    "action": action,
                    "observation.state": action,
                    "observation.images.top": rng.integers(0, 255, (12, 32, 32, 3), np.uint8),
                },
                task="Pick up the cube with the right arm and transfer it to the left arm.",
            )
    if nan_episode is not None:
        data_file = next((root / "data").rglob("*.parquet"))
        table = pd.read_parquet(data_file)
        row = table.index[(table["episode_index"] == nan_episode) & (table["frame_index"] == 5)][0]
        table.at[row, "action"] = np.where(np.arange(14) == 3, np.nan, table.at[row, "action"])
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), data_file)
    return root


def ingest_options(tmp_path: Path, root: Path, on_error: str = "raise", name: str = "aloha"):
    return {
        "sources": [{"name": name, "kind": "lerobot_v3", "root": str(root)}],
        "frames_dir": str(tmp_path / "frames"),
        "image_size": 32,
        "on_error": on_error,
        "val_fraction": 0.25,
    }


class KeptDataset(MemoryDataset):
    """Keeps its data when the runner releases intermediates, so tests can inspect them."""

    def _release(self) -> None:
        pass


def run_data_pipelines(options: dict) -> dict:
    pipeline = (
        ingest.create_pipeline()
        + action_mapping.create_pipeline()
        + normalization.create_pipeline()
    )
    catalog = DataCatalog(
        {
            "params:demonstrations": MemoryDataset([]),
            "params:ingest": MemoryDataset(options),
            "params:data_videos": MemoryDataset({"episodes": 1, "width": 64}),
        }
    )
    for name in ("episodes", "frames", "data_videos", "unified_actions", "norm_stats"):
        catalog[name] = KeptDataset()
    SequentialRunner().run(pipeline, catalog)
    return {
        name: catalog.load(name) for name in ("episodes", "frames", "unified_actions", "norm_stats")
    }


def test_data_pipelines_map_and_normalize_a_lerobot_dataset(tmp_path):
    outputs = run_data_pipelines(ingest_options(tmp_path, write_aloha_like(tmp_path / "aloha")))
    episodes, unified = outputs["episodes"], outputs["unified_actions"]
    assert len(episodes) == 48 and outputs["frames"]["aloha"]["episodes"] == 4
    assert set(episodes.loc[episodes["split"] == "val", "episode_index"]) == {3}
    native = np.stack(episodes["action"].to_numpy())
    assert np.array_equal(from_unified(np.stack(unified["action"].to_numpy()), "aloha"), native)
    stats = outputs["norm_stats"]["datasets"]["aloha"]["action"]
    train = native[episodes["split"].to_numpy() == "train"]
    assert np.allclose(np.asarray(stats["mean"])[16:22], train[:, :6].mean(0), atol=1e-6)


def test_nan_action_is_an_error_naming_dataset_episode_and_frame(tmp_path):
    root = write_aloha_like(tmp_path / "aloha", nan_episode=2)
    with pytest.raises(Exception, match=r"aloha.*episode 2.*frame 5") as caught:
        run_data_pipelines(ingest_options(tmp_path, root))
    assert isinstance(caught.value, InvalidEpisodeError) or isinstance(
        caught.value.__cause__, InvalidEpisodeError
    )


def test_nan_episode_is_skipped_and_counted_when_configured(tmp_path):
    root = write_aloha_like(tmp_path / "aloha", nan_episode=2)
    outputs = run_data_pipelines(ingest_options(tmp_path, root, on_error="skip"))
    assert sorted(outputs["episodes"]["episode_index"].unique()) == [0, 1, 3]
    assert outputs["frames"]["aloha"]["skipped"] == {"nonfinite_action": 1}


def test_truncated_parquet_is_skipped_and_counted_when_configured(tmp_path):
    root = write_aloha_like(tmp_path / "aloha")
    data_file = next((root / "data").rglob("*.parquet"))
    data_file.write_bytes(data_file.read_bytes()[:-200])
    with pytest.raises(Exception, match="parquet"):
        run_data_pipelines(ingest_options(tmp_path, root))
    outputs_dir = tmp_path / "skip"
    outputs_dir.mkdir()
    with pytest.raises(Exception, match="no valid episode"):
        run_data_pipelines(ingest_options(outputs_dir, root, on_error="skip"))


def test_unknown_dataset_fails_before_reading_and_lists_known_names(tmp_path):
    with pytest.raises(Exception, match="behavior1k_t0000") as caught:
        run_data_pipelines(ingest_options(tmp_path, tmp_path / "missing", name="not_a_dataset"))
    assert isinstance(caught.value, UnknownDatasetError) or isinstance(
        caught.value.__cause__, UnknownDatasetError
    )


def test_data_videos_caption_the_first_episodes_of_each_camera(tmp_path):
    outputs = run_data_pipelines(ingest_options(tmp_path, write_aloha_like(tmp_path / "aloha")))
    videos = render_data_videos(outputs["frames"], {"episodes": 2, "width": 128})
    assert list(videos) == ["aloha/observation.images.top.mp4"]
    path = tmp_path / "top.mp4"
    path.write_bytes(videos["aloha/observation.images.top.mp4"])
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 24  # two 12-frame episodes
    height, width, _ = frames[0].shape
    assert width == 128 and height > 128  # the image plus the caption bar
    assert frames[0][128:].max() > 200  # white caption text on the black bar
