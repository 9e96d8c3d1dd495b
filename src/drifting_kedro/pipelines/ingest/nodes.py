"""Nodes of the ingest stage: configured sources → episode table + frame stores."""

from pathlib import Path

import pandas as pd

from drifting_kedro.data_videos import dataset_videos
from drifting_kedro.ingest import ingest_sources
from drifting_kedro.sources import SourceConfig


def ingest_episodes(ingest_options: dict) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Read every configured source into one per-frame table and per-dataset frame stores.

    Args:
        ingest_options: `params:ingest` (sources, frames_dir, image_size, on_error, val_fraction).

    Returns:
        The per-frame episode table and the frame-store manifest.
    """
    sources = [_source_config(entry) for entry in ingest_options["sources"]]
    return ingest_sources(
        sources,
        frames_dir=Path(ingest_options["frames_dir"]),
        image_size=int(ingest_options["image_size"]),
        on_error=ingest_options["on_error"],
        val_fraction=float(ingest_options["val_fraction"]),
    )


def _source_config(entry: dict) -> SourceConfig:
    known = set(SourceConfig.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(
            f"ingest.sources entry {entry.get('name', entry)} has unknown keys {unknown}; "
            f"valid keys: {sorted(known)}"
        )
    return SourceConfig(**entry)


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
