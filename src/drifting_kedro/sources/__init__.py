"""Data sources: every kind of dataset yields the same `Episode` records.

`SourceConfig` is one entry of `ingest.sources` in the parameters; `iter_source_episodes` reads it,
whatever its kind, so the ingest stage never branches on formats. Sources only read: simulated
datasets are recorded beforehand (drifting_kedro.sim.record) and read here as LeRobot v3.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drifting_kedro.action_space import SOURCE_KINDS, get_spec
from drifting_kedro.sources.base import Episode
from drifting_kedro.sources.validation import InvalidEpisodeError, SkipCounter, skip

# The registry's source kinds but `sim`: a simulated dataset is recorded, then read as LeRobot v3.
READ_KINDS = tuple(kind for kind in SOURCE_KINDS if kind != "sim")


@dataclass(frozen=True)
class SourceConfig:
    """One configured dataset: its registry name, where it lives and how much of it to read."""

    name: str  # registry name (drifting_kedro.action_space)
    kind: str  # lerobot_v3 | rlbench | dexgraspnet
    root: str = ""  # local directory
    repo_id: str = ""  # hub id (lerobot_v3), used when root is empty
    max_episodes: int | None = None  # read at most this many episodes
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific keywords

    def __post_init__(self) -> None:
        if self.kind == "sim":
            raise ValueError(
                f"ingest.sources[{self.name}] has kind 'sim': simulated datasets are listed under "
                "`demonstrations` (recorded before ingest, then read like any LeRobot dataset); "
                "move the entry there"
            )
        if self.kind not in READ_KINDS:
            raise ValueError(
                f"ingest.sources[{self.name}].kind={self.kind!r} is not one of {READ_KINDS}"
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
    """Yield the episodes of one configured source.

    With `on_error="skip"`, a LeRobot episode whose files cannot be read (a truncated parquet,
    an undecodable frame: `unreadable`) or whose rows are unusable (no frames, no task text,
    frames out of order) is logged, counted in `counter` under its reason and skipped instead
    of ending the run.
    """
    if source.kind == "lerobot_v3":
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


def _lerobot_episodes(
    where: Path | str, source: SourceConfig, on_error: str, counter: SkipCounter | None
) -> Iterator[Episode]:
    """Episodes of a LeRobot v3 source, read from the registry's cameras of the dataset.

    `options: {cameras: [...]}` reads those cameras instead and `options: {cameras: all}` every
    RGB camera the dataset has; a camera the dataset lacks is an error naming its cameras.
    """
    from drifting_kedro.sources.lerobot_v3 import LeRobotFormatError, open_dataset

    options_key = f"ingest.sources[{source.name}].options"
    unknown = sorted(set(source.options) - {"cameras"})
    if unknown:
        raise ValueError(
            f"{options_key} has unknown keys {unknown}; a lerobot_v3 source takes `cameras`"
        )
    registry_cameras = list(get_spec(source.name).cameras)
    cameras = source.options.get("cameras", registry_cameras)
    if cameras == "all":
        cameras = None  # every RGB camera of the dataset
    elif not isinstance(cameras, list) or not all(isinstance(c, str) for c in cameras):
        raise ValueError(
            f"{options_key}.cameras must be `all` or a list of camera keys, got {cameras!r}"
        )
    elif not cameras:
        raise ValueError(
            f"no camera to read for {source.name!r} (registry cameras: {registry_cameras}, "
            f"{options_key}.cameras: {source.options.get('cameras')!r}); set "
            f"{options_key}.cameras to the camera keys to read or to `all`"
        )
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
