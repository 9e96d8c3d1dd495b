"""Ingest: every configured source → one per-frame episode table plus one frame store per dataset.

The table carries what the later stages compute on (native action and state, language, split);
the frames, resized to one square size, go to HDF5 frame stores that precompute and the data
videos read by row.
"""

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from drifting_kedro.action_space import get_spec
from drifting_kedro.features.frames import FrameStoreWriter
from drifting_kedro.sources import SourceConfig, iter_source_episodes
from drifting_kedro.sources.base import Episode
from drifting_kedro.sources.validation import SkipCounter, validate_episode

logger = logging.getLogger(__name__)


def ingest_sources(
    sources: list[SourceConfig],
    frames_dir: Path,
    image_size: int,
    on_error: str,
    val_fraction: float,
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Read every source once, validating each episode and writing its frames.

    Returns:
        The per-frame table (one row per frame, native vectors as lists) and a manifest
        `dataset -> {path, frames, episodes, cameras, image_size, fps, skipped}`.
    """
    if not sources:
        raise ValueError(
            "nothing to ingest: configure at least one dataset in `demonstrations` or "
            "ingest.sources"
        )
    if on_error not in ("raise", "skip"):
        raise ValueError(f"ingest.on_error must be 'raise' or 'skip', got {on_error!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"ingest.val_fraction must be in [0, 1), got {val_fraction}")
    frames_dir.mkdir(parents=True, exist_ok=True)
    tables, manifest = [], {}
    for source in sources:
        get_spec(source.name)  # an unknown dataset fails before any work, listing known names
        table, entry = _ingest_one(source, frames_dir / f"{source.name}.h5", image_size, on_error)
        tables.append(table)
        manifest[source.name] = entry
    episodes = pd.concat(tables, ignore_index=True)
    episodes["split"] = assign_splits(episodes, val_fraction)
    return episodes, manifest


def _ingest_one(
    source: SourceConfig, path: Path, image_size: int, on_error: str
) -> tuple[pd.DataFrame, dict]:
    writer: FrameStoreWriter | None = None
    rows, skips, fps, cameras = [], SkipCounter(), 0.0, []
    episodes = iter_source_episodes(source, on_error=on_error, counter=skips)
    try:
        for episode in tqdm(episodes, desc=f"ingest {source.name}", unit="episode"):
            valid = validate_episode(
                episode, on_error, skips, min_frames=source.min_frames, cameras=cameras
            )
            if not valid:
                continue
            if writer is None:
                cameras, fps = sorted(episode.images), episode.fps
                if not cameras:
                    raise ValueError(
                        f"dataset {source.name!r} episode {episode.episode_index} has no RGB "
                        f"camera, and the policy needs at least one view: check the cameras "
                        f"of ingest.sources[{source.name}] and of its files"
                    )
                writer = FrameStoreWriter(path, source.name, cameras, image_size)
            first_row = sum(len(r) for r in rows)
            writer.add_episode(episode)
            rows.append(_frame_rows(episode, first_row))
    except BaseException:
        if writer is not None:
            writer.abort()  # the previous store, if any, stays in place
        raise
    if writer is None:
        raise ValueError(
            f"dataset {source.name}: no valid episode was read ({skips.total} skipped: "
            f"{skips.report()['by_reason']}); check ingest.sources[{source.name}] and the log above"
        )
    writer.close()
    table = pd.concat(rows, ignore_index=True)
    logger.info(
        "ingest %s: %d episodes, %d frames, %d skipped %s",
        source.name,
        len(rows),
        len(table),
        skips.total,
        skips.report()["by_reason"],
    )
    entry = {
        "path": str(path),
        "episodes": len(rows),
        "frames": len(table),
        "skipped": skips.report()["by_reason"],
        "cameras": cameras,
        "image_size": image_size,
        "fps": fps,
    }
    return table, entry


def _frame_rows(episode: Episode, first_row: int) -> pd.DataFrame:
    length = episode.length
    return pd.DataFrame(
        {
            "dataset": episode.dataset,
            "episode_index": episode.episode_index,
            "frame_index": np.arange(length),
            "timestamp": np.arange(length) / episode.fps,
            "language": episode.language,
            "action": list(episode.action.astype(np.float32)),
            "state": list(episode.state.astype(np.float32)),
            "frame_row": np.arange(first_row, first_row + length),
        }
    )


def assign_splits(episodes: pd.DataFrame, val_fraction: float) -> pd.Series:
    """Hold out the last `val_fraction` of each dataset's episodes (at least one when it has two).

    Deterministic, per dataset, by episode index, so the split never depends on source order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"ingest.val_fraction must be in [0, 1), got {val_fraction}")
    split = pd.Series("train", index=episodes.index)
    for _, group in episodes.groupby("dataset"):
        ids = np.sort(group["episode_index"].unique())
        n_val = math.ceil(val_fraction * len(ids)) if len(ids) > 1 and val_fraction > 0 else 0
        held_out = set(ids[len(ids) - n_val :].tolist()) if n_val else set()
        split[group.index[group["episode_index"].isin(held_out)]] = "val"
    return split
