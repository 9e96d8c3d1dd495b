"""Episode videos as lerobot encodes and appends them; encoding survives a deadlocked encoder."""

import io
import logging
import threading
from fractions import Fraction
from pathlib import Path

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
    assert [attempt["svtav1-params"] for attempt in attempts] == [
        "fast-decode=0",
        "fast-decode=0:lp=1",
    ]
    assert retried == expected


def test_an_encoder_that_never_progresses_is_a_clear_error(episode_frames: np.ndarray, hang_first):
    hang_first(video.ENCODE_ATTEMPTS)
    with pytest.raises(RuntimeError, match="stalled 3 times.*run fewer jobs"):
        video.encode_episode_video(episode_frames, 50, "libsvtav1", stall_s=0.3)


def test_an_encoder_error_reaches_the_caller(episode_frames: np.ndarray):
    # x264's 4:2:0 output needs even sides: the encoder thread fails, the caller sees it.
    with pytest.raises(av.error.FFmpegError, match="avcodec_open2"):
        video.encode_episode_video(episode_frames[:, :31, :31], 50, "libx264")


def top_level_boxes(path: Path) -> list[str]:
    """The mp4's top-level box types in file order (ftyp, moov, free, mdat...)."""
    data, boxes, position = path.read_bytes(), [], 0
    while position + 8 <= len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        boxes.append(data[position + 4 : position + 8].decode("latin1"))
        position += size if size >= 8 else len(data)
    return boxes


def packet_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [packet.pts * stream.time_base for packet in container.demux(stream) if packet.size]


def test_encoder_options_are_lerobots():
    # lerobot 0.6.1 RGBEncoderConfig().get_codec_options(as_strings=True), without and with
    # encoder_threads=1.
    assert video._encoder_options("libsvtav1") == {
        "g": "2",
        "crf": "30",
        "preset": "12",
        "svtav1-params": "fast-decode=0",
    }
    assert video._encoder_options("libsvtav1", threads=1)["svtav1-params"] == "fast-decode=0:lp=1"


def test_episodes_are_appended_like_lerobot_with_the_moov_box_first(
    tmp_path: Path, episode_frames: np.ndarray
):
    first = video.encode_episode_video(episode_frames[:25], 30, "libsvtav1")
    second = video.encode_episode_video(episode_frames[25:], 30, "libsvtav1")
    shared = tmp_path / "videos/cam/chunk-000/file-000.mp4"
    video.append_episode_video(shared, first)
    assert shared.read_bytes() == first  # a file's first episode is its encode, as lerobot moves it
    video.append_episode_video(shared, second)
    boxes = top_level_boxes(shared)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    assert not list(shared.parent.glob(".*"))  # the temporary file was renamed into place
    # The second episode starts where the first ends: 25 frames at 30 fps, exactly.
    times = packet_times(shared)
    assert times == [Fraction(i, 30) for i in range(40)]
    assert video.video_duration_s(first) == pytest.approx(25 / 30, abs=1e-12)
    frames = video.VideoFrameReader().decode(shared, [25 / 30, 39 / 30])
    with av.open(io.BytesIO(second)) as episode:
        start = next(episode.decode(video=0)).to_ndarray(format="rgb24")
    np.testing.assert_array_equal(frames[0], start)
