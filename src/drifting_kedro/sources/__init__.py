"""Data sources: every kind of dataset yields the same `Episode` records.

`SourceConfig` is one entry of `ingest.sources` in the parameters; `iter_source_episodes` reads it,
whatever its kind, so the ingest stage never branches on formats.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drifting_kedro.sources.base import Episode

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
        if self.kind != "lerobot_v3" and not self.root:
            raise ValueError(f"ingest.sources[{self.name}] needs a `root` directory")
        if self.kind == "lerobot_v3" and not (self.root or self.repo_id):
            raise ValueError(f"ingest.sources[{self.name}] needs a `root` or a `repo_id`")


def iter_source_episodes(source: SourceConfig) -> Iterator[Episode]:
    """Yield the episodes of one configured source, generating simulated data on first use."""
    if source.kind == "sim":
        yield from _iter_sim(source)
    elif source.kind == "lerobot_v3":
        yield from _iter_lerobot(source)
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


def _iter_sim(source: SourceConfig) -> Iterator[Episode]:
    from drifting_kedro.sim.record import record_dataset
    from drifting_kedro.sources.lerobot_v3 import open_dataset

    root = Path(source.root)
    if not (root / "meta" / "info.json").exists():
        logger.info(
            "Generating %d demonstrations of %s into %s", source.num_episodes, source.name, root
        )
        report = record_dataset(
            source.name,
            root,
            num_episodes=source.num_episodes,
            seed=source.seed,
            image_size=source.image_size,
        )
        logger.info("%s expert: %s", source.name, report)
    yield from _limited(open_dataset(root, dataset=source.name).iter_episodes(), source)


def _iter_lerobot(source: SourceConfig) -> Iterator[Episode]:
    from drifting_kedro.sources.lerobot_v3 import open_dataset

    where = _existing_root(source) if source.root else source.repo_id
    yield from _limited(open_dataset(where, dataset=source.name).iter_episodes(), source)


def _limited(episodes: Iterator[Episode], source: SourceConfig) -> Iterator[Episode]:
    for count, episode in enumerate(episodes):
        if source.max_episodes is not None and count >= source.max_episodes:
            return
        yield episode


def _existing_root(source: SourceConfig) -> Path:
    root = Path(source.root)
    if not root.exists():
        raise FileNotFoundError(
            f"ingest.sources[{source.name}].root={source.root!r} does not exist: download the "
            "dataset there or fix the path in conf/<env>/parameters_ingest.yml"
        )
    return root
