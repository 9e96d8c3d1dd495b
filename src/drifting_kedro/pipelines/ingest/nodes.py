"""Nodes of the ingest stage: recorded demonstrations and configured sources → episode table +
frame stores."""

from pathlib import Path
from typing import TypeVar

import pandas as pd

from drifting_kedro.data_videos import dataset_videos
from drifting_kedro.ingest import ingest_sources
from drifting_kedro.sim.record import RecordingConfig, ensure_recorded
from drifting_kedro.sources import SourceConfig

Config = TypeVar("Config", RecordingConfig, SourceConfig)


def record_demonstrations(demonstrations: list[dict]) -> dict[str, dict]:
    """Record each simulated dataset with its scripted expert, unless it is recorded already.

    Args:
        demonstrations: `params:demonstrations` (name, root, num_episodes, seed, image_size,
            use_videos, steps_after_success per dataset).

    Returns:
        `{dataset: {root, episodes, expert_success_rate, seed, ...}}`, read by ingest.
    """
    recordings = [_config(RecordingConfig, entry, "demonstrations") for entry in demonstrations]
    names = [recording.name for recording in recordings]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"demonstrations lists {repeated} more than once")
    return {recording.name: ensure_recorded(recording) for recording in recordings}


def ingest_episodes(
    ingest_options: dict, recorded_demonstrations: dict[str, dict]
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Read the recorded demonstrations, then every configured source, into one per-frame table
    and per-dataset frame stores.

    Args:
        ingest_options: `params:ingest` (sources, frames_dir, image_size, on_error, val_fraction).
        recorded_demonstrations: what `record_demonstrations` recorded, read as LeRobot v3.

    Returns:
        The per-frame episode table and the frame-store manifest.
    """
    recorded = [
        SourceConfig(name=name, kind="lerobot_v3", root=entry["root"])
        for name, entry in recorded_demonstrations.items()
    ]
    configured = [
        _config(SourceConfig, entry, "ingest.sources") for entry in ingest_options["sources"]
    ]
    twice = sorted({s.name for s in configured} & set(recorded_demonstrations))
    if twice:
        raise ValueError(
            f"{twice} are both recorded (`demonstrations`) and listed in ingest.sources: "
            "keep one of the two entries"
        )
    return ingest_sources(
        recorded + configured,
        frames_dir=Path(ingest_options["frames_dir"]),
        image_size=int(ingest_options["image_size"]),
        on_error=ingest_options["on_error"],
        val_fraction=float(ingest_options["val_fraction"]),
    )


def _config(config_class: type[Config], entry: dict, where: str) -> Config:
    """`config_class(**entry)`, naming the entry and the valid keys when one is unknown."""
    known = set(config_class.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(
            f"{where} entry {entry.get('name', entry)} has unknown keys {unknown}; "
            f"valid keys: {sorted(known)}"
        )
    return config_class(**entry)


def render_data_videos(frames: dict[str, dict], video_options: dict) -> dict[str, bytes]:
    """Captioned mp4s of the first episodes of every dataset and camera, to check data by eye.

    Args:
        frames: the frame-store manifest from ingest.
        video_options: `params:data_videos` (episodes, width).

    Returns:
        `{"<dataset>/<camera>.mp4": bytes}`.
    """
    videos = {}
    for entry in frames.values():
        videos.update(
            dataset_videos(entry["path"], video_options["episodes"], video_options["width"])
        )
    return videos
