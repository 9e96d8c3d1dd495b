"""Checks every episode before it enters the pipeline: bad input never poisons a run.

One bad episode either stops the run with a message naming dataset, episode and frame
(``on_error="raise"``) or is dropped with the same message logged and counted per reason
(``on_error="skip"``), so a skip is never silent. Readers raise `InvalidEpisodeError` too, for
what only they can see (timestamps, frame order, the task table), so those count the same way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from drifting_kedro.action_space import UnknownDatasetError, get_spec
from drifting_kedro.sources.base import Episode

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]

# Reasons, the keys of SkipCounter.by_reason.
UNKNOWN_DATASET = "unknown_dataset"
UNREADABLE = "unreadable"  # a file of the episode is missing, truncated or undecodable
ZERO_FRAMES = "zero_frames"
TOO_SHORT = "too_short"
BAD_FRAME_INDEX = "bad_frame_index"
BAD_TIMESTAMPS = "bad_timestamps"
MISSING_CAMERA = "missing_camera"
ACTION_WIDTH = "action_width"
STATE_WIDTH = "state_width"
LENGTH_MISMATCH = "length_mismatch"
NONFINITE_ACTION = "nonfinite_action"
NONFINITE_STATE = "nonfinite_state"
MISSING_LANGUAGE = "missing_language"
BAD_IMAGE = "bad_image"
BAD_FPS = "bad_fps"


class InvalidEpisodeError(ValueError):
    """An episode that cannot be used; ``reason`` is one of this module's reason constants."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class SkipCounter:
    """Skipped episodes per reason and per dataset, for the run's report."""

    by_reason: Counter[str] = field(default_factory=Counter)
    by_dataset: Counter[str] = field(default_factory=Counter)

    def record(self, dataset: str, reason: str) -> None:
        self.by_reason[reason] += 1
        self.by_dataset[dataset] += 1

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def report(self) -> dict[str, dict[str, int]]:
        return {"by_reason": dict(self.by_reason), "by_dataset": dict(self.by_dataset)}


def _where(episode: Episode) -> str:
    return f"dataset {episode.dataset!r} episode {episode.episode_index}"


def _first_nonfinite(values: np.ndarray) -> tuple[int, int] | None:
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    frame, dim = np.argwhere(bad)[0]
    return int(frame), int(dim)


def _check_table(episode: Episode, kind: str, values: object, width: int) -> np.ndarray:
    where = _where(episode)
    arr = np.asarray(values)
    reason = ACTION_WIDTH if kind == "action" else STATE_WIDTH
    if arr.ndim != 2:
        raise InvalidEpisodeError(
            reason, f"{where}: {kind} must be [T, {width}], got shape {arr.shape}"
        )
    if arr.shape[1] != width:
        raise InvalidEpisodeError(
            reason,
            f"{where}: {kind} width {arr.shape[1]} does not match the registry's {width} (fix "
            "the source or the dataset's row in src/drifting_kedro/action_space/registry.yml)",
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise InvalidEpisodeError(reason, f"{where}: {kind} dtype {arr.dtype} is not numeric")
    bad = _first_nonfinite(arr)
    if bad is not None:
        frame, dim = bad
        raise InvalidEpisodeError(
            NONFINITE_ACTION if kind == "action" else NONFINITE_STATE,
            f"{where} frame {frame}: {kind} dim {dim} is {arr[frame, dim]} (NaN/inf)",
        )
    return arr


def _check(episode: Episode, min_frames: int, cameras: Sequence[str]) -> None:
    where = _where(episode)
    try:
        spec = get_spec(episode.dataset)
    except UnknownDatasetError as err:
        raise InvalidEpisodeError(UNKNOWN_DATASET, f"{where}: {err}") from None
    action = np.asarray(episode.action)
    if action.ndim == 0 or action.shape[0] == 0:
        raise InvalidEpisodeError(ZERO_FRAMES, f"{where}: has zero frames")
    if action.shape[0] < min_frames:
        raise InvalidEpisodeError(
            TOO_SHORT,
            f"{where}: has {action.shape[0]} frame(s), fewer than the {min_frames} a trajectory "
            "needs to give an action to learn from (it would only pad a chunk or a metric)",
        )
    action = _check_table(episode, "action", action, spec.action_dim)
    state = _check_table(episode, "state", episode.state, spec.state_dim)
    length = action.shape[0]
    if state.shape[0] != length:
        raise InvalidEpisodeError(
            LENGTH_MISMATCH, f"{where}: {state.shape[0]} state frames but {length} action frames"
        )
    if not isinstance(episode.language, str) or not episode.language.strip():
        raise InvalidEpisodeError(
            MISSING_LANGUAGE,
            f"{where}: missing or empty language instruction {episode.language!r} "
            "(language comes from the data and is never invented)",
        )
    if not np.isfinite(episode.fps) or episode.fps <= 0:
        raise InvalidEpisodeError(BAD_FPS, f"{where}: fps must be > 0, got {episode.fps}")
    missing = [camera for camera in cameras if camera not in episode.images]
    if missing:
        raise InvalidEpisodeError(
            MISSING_CAMERA,
            f"{where}: has no camera {missing} (it has {sorted(episode.images)}); every episode "
            f"of a dataset needs the same views {list(cameras)}",
        )
    for camera, value in episode.images.items():
        frames = np.asarray(value)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InvalidEpisodeError(
                BAD_IMAGE,
                f"{where}: camera {camera!r} must be [T, H, W, 3] uint8, "
                f"got shape {frames.shape} dtype {frames.dtype}",
            )
        if frames.shape[0] != length:
            raise InvalidEpisodeError(
                BAD_IMAGE,
                f"{where}: camera {camera!r} has {frames.shape[0]} frames but the episode has "
                f"{length}",
            )


def validate_episode(
    episode: Episode,
    on_error: OnError = "raise",
    counter: SkipCounter | None = None,
    *,
    min_frames: int = 1,
    cameras: Sequence[str] = (),
) -> bool:
    """True if the episode is usable; otherwise raise or (skip) log, count and return False.

    `min_frames` is the shortest usable episode (a trajectory needs 2; a grasp is one pose) and
    `cameras` the views every episode of the dataset must have.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    try:
        _check(episode, min_frames, cameras)
    except InvalidEpisodeError as err:
        skip(err, str(episode.dataset), on_error, counter)
        return False
    return True


def skip(error: Exception, dataset: str, on_error: OnError, counter: SkipCounter | None) -> None:
    """Re-raise `error`, or (skip) log and count it under its reason."""
    if on_error != "skip":
        raise error
    reason = getattr(error, "reason", UNREADABLE)
    logger.warning("skipping episode (%s): %s", reason, error)
    if counter is not None:
        counter.record(dataset, reason)


def filter_valid(
    episodes: Iterable[Episode], on_error: OnError = "raise", counter: SkipCounter | None = None
) -> Iterator[Episode]:
    """Yield the valid episodes; skips go to ``counter`` (and the log)."""
    for episode in episodes:
        if validate_episode(episode, on_error, counter):
            yield episode
