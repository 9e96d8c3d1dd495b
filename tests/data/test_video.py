"""Episode encoding survives a deadlocked encoder (SVT-AV1 4.1 on a busy machine)."""

import logging
import threading

import av
import numpy as np
import pytest

from drifting_kedro.sources import video


@pytest.fixture(scope="module")
def episode_frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    return np.clip(scene + rng.integers(-20, 20, (40, 32, 32, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def hang_first(monkeypatch):
    """`hang_first(n)`: the next n encodes hang before taking a frame, as SVT-AV1's did;
    returns the list of the options each attempt ran with."""
    release = threading.Event()
    encode = video._EpisodeEncode.run

    def install(count: int) -> list[dict]:
        attempts: list[dict] = []

        def run(self) -> None:
            attempts.append(self.options)
            if len(attempts) <= count:
                release.wait(30)  # stuck inside the encoder: no frame comes out
                return
            encode(self)

        monkeypatch.setattr(video._EpisodeEncode, "run", run)
        return attempts

    yield install
    release.set()


def test_a_stalled_encoder_is_abandoned_and_the_episode_encoded_again(
    episode_frames: np.ndarray, hang_first, caplog
):
    expected = video.encode_episode_video(episode_frames, 50, "libsvtav1")
    attempts = hang_first(1)
    with caplog.at_level(logging.WARNING):
        retried = video.encode_episode_video(episode_frames, 50, "libsvtav1", stall_s=0.5)
    assert "took no frame" in caplog.text
    # The retry runs SVT-AV1 at its lowest parallelism and writes the very same file.
    assert [attempt.get("svtav1-params") for attempt in attempts] == [None, "lp=1"]
    assert retried == expected


def test_an_encoder_that_never_progresses_is_a_clear_error(episode_frames: np.ndarray, hang_first):
    hang_first(video.ENCODE_ATTEMPTS)
    with pytest.raises(RuntimeError, match="stalled 3 times.*run fewer jobs"):
        video.encode_episode_video(episode_frames, 50, "libsvtav1", stall_s=0.3)


def test_an_encoder_error_reaches_the_caller(episode_frames: np.ndarray):
    # x264's 4:2:0 output needs even sides: the encoder thread fails, the caller sees it.
    with pytest.raises(av.error.FFmpegError, match="avcodec_open2"):
        video.encode_episode_video(episode_frames[:, :31, :31], 50, "libx264")
