"""Data sources: every kind of dataset yields the same `Episode` records.

`SourceConfig` is one entry of `ingest.sources` in the parameters; `iter_source_episodes` reads it,
whatever its kind, so the ingest stage never branches on formats.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drifting_kedro.action_space import get_spec
from drifting_kedro.sources.base import Episode
from drifting_kedro.sources.validation import InvalidEpisodeError, SkipCounter, skip

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("sim", "lerobot_v3", "rlbench", "dexgraspnet")


@dataclass(frozen=True)
class SourceConfig:
    """One configured dataset: its registry name, where it lives and how much of it to read."""

    name: str  # registry name (drifting_kedro.action_space)
    kind: str  # one of SOURCE_KINDS
    root: str = ""  # local directory; for `sim` where the generated dataset is written
    repo_id: str = ""  # hub id (lerobot_v3), used when root is empty
    max_episodes: int | None = None  # read at most this many episodes
    num_episodes: int = 0  # sim only: successful demonstrations to generate
    seed: int = 0  # sim only: first demonstration seed
    image_size: int = 96  # sim only: rendered camera size
    use_videos: bool = False  # sim only: cameras as AV1 video (lossy) instead of PNG images
    steps_after_success: int | None = None  # sim only: end demos this long after success
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific keywords

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(
                f"ingest.sources[{self.name}].kind={self.kind!r} is not one of {SOURCE_KINDS}"
            )
        if self.kind == "sim" and self.num_episodes < 1:
            raise ValueError(
                f"ingest.sources[{self.name}].num_episodes must be >= 1 for a simulated "
                f"source, got {self.num_episodes}"
            )
        if self.steps_after_success is not None and self.steps_after_success < 0:
            raise ValueError(
                f"ingest.sources[{self.name}].steps_after_success must be >= 0 or null, got "
                f"{self.steps_after_success}"
            )
        if self.kind != "lerobot_v3" and not self.root:
            raise ValueError(f"ingest.sources[{self.name}] needs a `root` directory")
        if self.kind == "lerobot_v3" and not (self.root or self.repo_id):
            raise ValueError(f"ingest.sources[{self.name}] needs a `root` or a `repo_id`")

    @property
    def min_frames(self) -> int:
        """Frames an episode needs: a DexGraspNet grasp is one pose, a trajectory needs two."""
        return 1 if self.kind == "dexgraspnet" else 2


def iter_source_episodes(
    source: SourceConfig, on_error: str = "raise", counter: SkipCounter | None = None
) -> Iterator[Episode]:
    """Yield the episodes of one configured source, generating simulated data on first use.

    With `on_error="skip"`, a LeRobot episode whose files cannot be read (a truncated parquet,
    an undecodable frame: `unreadable`) or whose rows are unusable (no frames, no task text,
    frames out of order) is logged, counted in `counter` under its reason and skipped instead
    of ending the run.
    """
    if source.kind == "sim":
        yield from _lerobot_episodes(_generated_root(source), source, on_error, counter)
    elif source.kind == "lerobot_v3":
        where = _existing_root(source) if source.root else source.repo_id
        yield from _lerobot_episodes(where, source, on_error, counter)
    elif source.kind == "rlbench":
        from drifting_kedro.sources import rlbench

        yield from rlbench.iter_episodes(
            _existing_root(source), max_episodes=source.max_episodes, **source.options
        )
    else:
        from drifting_kedro.sources import dexgraspnet

        yield from dexgraspnet.iter_episodes(
            _existing_root(source), max_episodes=source.max_episodes, **source.options
        )


def _generated_root(source: SourceConfig) -> Path:
    """The simulated dataset's root, recording its demonstrations first if it is not there."""
    from drifting_kedro.sim.record import check_recording, record_dataset

    root = Path(source.root)
    recording = dict(
        num_episodes=source.num_episodes,
        seed=source.seed,
        image_size=source.image_size,
        use_videos=source.use_videos,
        steps_after_success=source.steps_after_success,
    )
    if (root / "meta" / "info.json").exists():
        check_recording(source.name, root, **recording)
    else:
        logger.info(
            "Generating %d demonstrations of %s into %s", source.num_episodes, source.name, root
        )
        report = record_dataset(source.name, root, **recording)
        logger.info("%s expert: %s", source.name, report)
    return root


def _lerobot_episodes(
    where: Path | str, source: SourceConfig, on_error: str, counter: SkipCounter | None
) -> Iterator[Episode]:
    from drifting_kedro.sources.lerobot_v3 import LeRobotFormatError, open_dataset

    cameras = get_spec(source.name).cameras or None
    with open_dataset(where, dataset=source.name, cameras=cameras) as dataset:
        indices = dataset.episodes["episode_index"].tolist()[: source.max_episodes]
        for index in indices:
            try:
                episode = dataset.episode(int(index))
            except (LeRobotFormatError, InvalidEpisodeError) as error:
                skip(error, source.name, on_error, counter)
                continue
            yield episode


def _existing_root(source: SourceConfig) -> Path:
    root = Path(source.root)
    if not root.exists():
        raise FileNotFoundError(
            f"ingest.sources[{source.name}].root={source.root!r} does not exist: download the "
            "dataset there or fix the path in conf/<env>/parameters_ingest.yml"
        )
    return root
