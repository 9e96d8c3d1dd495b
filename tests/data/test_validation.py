"""Every kind of bad episode raises with a precise message, or is logged and counted."""

import logging

import numpy as np
import pytest

from drifting_kedro.sources.base import Episode
from drifting_kedro.sources.validation import (
    InvalidEpisodeError,
    SkipCounter,
    filter_valid,
    validate_episode,
)


def good_episode(**changes) -> Episode:
    fields = dict(
        dataset="fetch_push",
        episode_index=7,
        language="Push the block to the red target.",
        fps=25.0,
        action=np.zeros((5, 4), dtype=np.float32),
        state=np.zeros((5, 4), dtype=np.float32),
        images={"observation.images.front": np.zeros((5, 8, 8, 3), dtype=np.uint8)},
    )
    fields.update(changes)
    return Episode(**fields)


def with_value(kind: str, frame: int, dim: int, value: float) -> Episode:
    array = np.zeros((5, 4), dtype=np.float32)
    array[frame, dim] = value
    return good_episode(**{kind: array})


BAD = {
    "nan_action": (
        with_value("action", 3, 2, np.nan),
        "nonfinite_action",
        r"frame 3: action dim 2",
    ),
    "inf_state": (with_value("state", 1, 0, np.inf), "nonfinite_state", r"frame 1: state dim 0"),
    "action_width": (
        good_episode(action=np.zeros((5, 7), dtype=np.float32)),
        "action_width",
        r"action width 7 does not match the registry's 4",
    ),
    "state_width": (
        good_episode(state=np.zeros((5, 3), dtype=np.float32)),
        "state_width",
        r"state width 3",
    ),
    "missing_language": (good_episode(language="  "), "missing_language", "language"),
    "none_language": (good_episode(language=None), "missing_language", "language"),
    "zero_frames": (
        good_episode(action=np.zeros((0, 4)), state=np.zeros((0, 4)), images={}),
        "zero_frames",
        "zero frames",
    ),
    "unknown_dataset": (good_episode(dataset="fetch_pusj"), "unknown_dataset", "known datasets"),
    "image_dtype": (
        good_episode(images={"cam": np.zeros((5, 8, 8, 3), dtype=np.float32)}),
        "bad_image",
        r"camera 'cam' must be \[T, H, W, 3\] uint8",
    ),
    "image_length": (
        good_episode(images={"cam": np.zeros((4, 8, 8, 3), dtype=np.uint8)}),
        "bad_image",
        "has 4 frames but the episode has 5",
    ),
    "length_mismatch": (
        good_episode(state=np.zeros((6, 4), dtype=np.float32)),
        "length_mismatch",
        "6 state frames but 5 action frames",
    ),
}


def test_good_episode_passes():
    assert validate_episode(good_episode(), "raise")
    assert validate_episode(good_episode(), "skip")


@pytest.mark.parametrize("case", sorted(BAD))
def test_raise(case):
    episode, reason, pattern = BAD[case]
    with pytest.raises(InvalidEpisodeError, match=pattern) as err:
        validate_episode(episode, "raise")
    assert err.value.reason == reason
    assert "episode 7" in str(err.value) and "'fetch_pus" in str(err.value)


@pytest.mark.parametrize("case", sorted(BAD))
def test_skip_logs_and_counts(case, caplog):
    episode, reason, pattern = BAD[case]
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="drifting_kedro.sources.validation"):
        assert validate_episode(episode, "skip", counter) is False
    assert counter.by_reason == {reason: 1} and counter.total == 1
    assert any(reason in r.getMessage() and "episode 7" in r.getMessage() for r in caplog.records)


def test_filter_valid_counts_per_reason():
    nan = BAD["nan_action"][0]
    episodes = [good_episode(), nan, good_episode(), BAD["zero_frames"][0], nan]
    counter = SkipCounter()
    kept = list(filter_valid(episodes, "skip", counter))
    assert len(kept) == 2
    assert counter.report() == {
        "by_reason": {"nonfinite_action": 2, "zero_frames": 1},
        "by_dataset": {"fetch_push": 3},
    }
    with pytest.raises(InvalidEpisodeError):
        list(filter_valid(episodes, "raise"))
    with pytest.raises(ValueError, match="on_error must be"):
        validate_episode(good_episode(), "ignore")
