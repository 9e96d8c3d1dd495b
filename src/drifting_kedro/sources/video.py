"""PyAV video helpers for LeRobot v3 datasets: encode like lerobot, decode by exact timestamp.

lerobot encodes each episode to its own mp4 (libsvtav1, yuv420p, g=2, crf=30) and appends it to
a shared mp4 without re-encoding; an episode is then found by its `from_timestamp` in that file.
`encode_episode_video` + `VideoFileMuxer` do the same in-process (the per-episode mp4 stays in
memory and its packets are remuxed with a time offset), and `VideoFrameReader` picks frames by
presentation time: seek to the preceding keyframe, decode forward, keep the frame whose pts-time
matches within a tolerance. Approximate seeking (by frame count or nearest packet) can return
the neighbouring frame, which silently misaligns images and actions.
"""

import io
import logging
import os
import threading
import time
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

# lerobot's encode_video_frames defaults (lerobot 0.4, datasets/video_utils.py).
DEFAULT_VCODEC = "libsvtav1"
DEFAULT_PIX_FMT = "yuv420p"
DEFAULT_GOP = 2
DEFAULT_CRF = 30
# Tried in order when the preferred encoder is missing from PyAV's bundled FFmpeg.
FALLBACK_VCODECS = ("libaom-av1", "libx264")
TIMESTAMP_TOLERANCE_S = 1e-4  # lerobot's default `tolerance_s`
# An encoder that takes no frame for this long is deadlocked, not slow (a frame takes ~2 ms).
ENCODE_STALL_S = 60.0
ENCODE_ATTEMPTS = 3


class VideoDecodeError(ValueError):
    """A requested frame could not be decoded; `position` indexes the requested timestamps."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def encoder_available(codec: str) -> bool:
    """True when PyAV's FFmpeg can encode with `codec` (e.g. "libsvtav1")."""
    try:
        av.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):  # unknown codec name
        return False
    return True


def pick_video_codec(preferred: str = DEFAULT_VCODEC) -> str:
    """The preferred encoder if present, else the first available fallback (with a warning)."""
    if encoder_available(preferred):
        return preferred
    for codec in FALLBACK_VCODECS:
        if encoder_available(codec):
            logger.warning(
                "Video encoder %r is not in PyAV's FFmpeg build; falling back to %r. "
                "lerobot decodes it, but files differ from lerobot's AV1 output.",
                preferred,
                codec,
            )
            return codec
    raise RuntimeError(
        f"No video encoder among {(preferred, *FALLBACK_VCODECS)} is available in PyAV "
        f"{av.__version__}; install a PyAV wheel built with libsvtav1 or libx264"
    )


def _encoder_options(codec: str, *, single_threaded: bool = False) -> dict[str, str]:
    options = {"g": str(DEFAULT_GOP), "crf": str(DEFAULT_CRF)}
    if codec == "libx264":
        # B-frames give negative dts at the start of each episode, which cannot be appended
        # after the previous episode in one mp4 without re-encoding.
        options["bf"] = "0"
    if codec == "libsvtav1" and single_threaded:
        # The lowest level of parallelism; SVT-AV1's bitstream does not depend on it.
        options["svtav1-params"] = "lp=1"
    return options


def encode_episode_video(
    frames: np.ndarray, fps: int, codec: str, *, stall_s: float = ENCODE_STALL_S
) -> bytes:
    """Encode `frames` [T, H, W, 3] uint8 RGB into a standalone mp4, lerobot's settings.

    SVT-AV1 4.1 (PyAV's bundled encoder) can deadlock on a busy machine: the call then waits
    forever at 0 % CPU (4 processes encoding side by side for 10 min: 2 of them hung). The
    encode runs in a worker thread, and an encoder that has taken no frame for `stall_s`
    seconds is abandoned and the episode encoded again with a fresh one, at SVT-AV1's lowest
    parallelism (the same bytes, 2.4x slower; 0 hangs in the same 10 min test).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"video frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}"
        )
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr unless told
    for attempt in range(1, ENCODE_ATTEMPTS + 1):
        encode = _EpisodeEncode(
            frames, fps, codec, _encoder_options(codec, single_threaded=attempt > 1)
        )
        encode.start()
        if _finished(encode, stall_s):
            if encode.error is not None:
                raise encode.error
            return encode.mp4
        logger.warning(
            "Video encoder %r took no frame for %.0f s (%d of %d frames done): abandoning it "
            "and encoding the episode again (attempt %d of %d)",
            codec, stall_s, encode.frames_done, len(frames), attempt + 1, ENCODE_ATTEMPTS,
        )  # fmt: skip
    raise RuntimeError(
        f"video encoder {codec!r} stalled {ENCODE_ATTEMPTS} times on a {frames.shape} episode; "
        "the machine may be overloaded: run fewer jobs beside this one"
    )


class _EpisodeEncode(threading.Thread):
    """One episode's encode in a daemon thread that counts the frames the encoder has taken, so
    a deadlocked encoder (no progress) is told apart from a slow one. PyAV releases the GIL
    inside the encoder, so the waiting thread keeps running."""

    def __init__(self, frames: np.ndarray, fps: int, codec: str, options: dict[str, str]):
        super().__init__(name=f"encode-{codec}", daemon=True)
        self.frames, self.fps, self.codec, self.options = frames, fps, codec, options
        self.frames_done = 0
        self.mp4 = b""
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            buffer = io.BytesIO()
            with av.open(buffer, "w", format="mp4") as container:
                stream = container.add_stream(self.codec, rate=self.fps, options=self.options)
                stream.pix_fmt = DEFAULT_PIX_FMT
                stream.height, stream.width = int(self.frames.shape[1]), int(self.frames.shape[2])
                for image in self.frames:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    container.mux(stream.encode(frame))
                    self.frames_done += 1
                container.mux(stream.encode())  # flush the encoder
            self.mp4 = buffer.getvalue()
        except Exception as error:  # raised again in the caller's thread
            self.error = error


def _finished(encode: _EpisodeEncode, stall_s: float) -> bool:
    """Wait for the encode; False as soon as it has taken no frame for `stall_s` seconds."""
    done, since = encode.frames_done, time.monotonic()
    while encode.is_alive():
        encode.join(timeout=min(1.0, stall_s / 4))
        if encode.frames_done != done:
            done, since = encode.frames_done, time.monotonic()
        elif encode.is_alive() and time.monotonic() - since > stall_s:
            return False
    return True


class VideoFileMuxer:
    """One shared mp4 that episodes are appended to, each at the end of the previous one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size_bytes = 0  # bytes of episode mp4s appended, lerobot's rollover measure
        self.duration = Fraction(0)  # seconds, exact
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def append(self, episode_mp4: bytes) -> tuple[float, float]:
        """Remux one episode's mp4 after the current end; returns its (from, to) timestamps."""
        from_ts = self.duration
        with av.open(io.BytesIO(episode_mp4), "r") as source:
            in_stream = source.streams.video[0]
            in_tb = in_stream.time_base
            if self._container is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._container = av.open(str(self.path), "w", format="mp4")
                self._stream = self._container.add_stream_from_template(in_stream, opaque=True)
            episode_end = Fraction(0)
            for packet in source.demux(in_stream):
                if packet.size == 0:  # demuxer's end-of-stream marker
                    continue
                start = packet.pts * in_tb
                episode_end = max(episode_end, start + (packet.duration or 0) * in_tb)
                packet.pts = round((start + from_ts) / in_tb)
                packet.dts = round((packet.dts * in_tb + from_ts) / in_tb)
                packet.stream = self._stream
                self._container.mux(packet)
            if in_stream.duration is not None:
                episode_end = in_stream.duration * in_tb
        self.duration = from_ts + episode_end
        self.size_bytes += len(episode_mp4)
        return float(from_ts), float(self.duration)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def read_video_info(path: Path) -> dict:
    """The `info` dict lerobot stores for a video feature in info.json, read from the file."""
    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        pix_fmt = stream.codec_context.pix_fmt or DEFAULT_PIX_FMT
        info = {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate),
            "video.channels": _pixel_channels(pix_fmt),
        }
        has_audio = len(container.streams.audio) > 0
    info["has_audio"] = has_audio
    return info


def _pixel_channels(pix_fmt: str) -> int:
    if "gray" in pix_fmt:
        return 1
    if "rgba" in pix_fmt or "yuva" in pix_fmt:
        return 4
    return 3


class VideoFrameReader:
    """Decodes frames at exact timestamps, keeping a few containers open for random access."""

    def __init__(self, max_open: int = 8, tolerance_s: float = TIMESTAMP_TOLERANCE_S) -> None:
        self.tolerance_s = tolerance_s
        self._max_open = max_open
        self._open: OrderedDict[Path, av.container.InputContainer] = OrderedDict()

    def _container(self, path: Path) -> av.container.InputContainer:
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        container = av.open(str(path), "r")
        self._open[path] = container
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)[1].close()
        return container

    def decode(self, path: Path, timestamps: list[float]) -> np.ndarray:
        """Frames at ascending `timestamps` (seconds) as [N, H, W, 3] uint8 RGB.

        Raises VideoDecodeError naming the first timestamp without a matching frame.
        """
        if not timestamps:
            raise ValueError(f"no timestamps requested from {path}")
        found: list[np.ndarray | None] = [None] * len(timestamps)
        try:
            errors = self._decode(path, timestamps, found)
        except av.error.FFmpegError as error:  # the file cannot be opened or demuxed
            self._drop(path)
            errors = [error]
        missing = [i for i, image in enumerate(found) if image is None]
        if missing:
            reason = f"{type(errors[0]).__name__}: {errors[0]}" if errors else "frame absent"
            raise VideoDecodeError(
                f"no frame within {self.tolerance_s} s of t={timestamps[missing[0]]:.6f} s "
                f"({len(missing)} of {len(timestamps)} requested frames missing; {reason})",
                missing[0],
            )
        return np.stack(found)

    def _decode(self, path: Path, timestamps: list[float], found: list) -> list[Exception]:
        """Fill `found` with the frame matching each timestamp, decoding from a keyframe.

        A packet the decoder rejects is skipped, so the frames it carried stay missing and the
        caller can name them; the decoder's errors are returned.
        """
        container = self._container(path)
        stream = container.streams.video[0]
        tb = stream.time_base
        first, last = timestamps[0], timestamps[-1]
        container.seek(max(int((first - self.tolerance_s) / tb), 0), stream=stream, backward=True)
        wanted = np.asarray(timestamps, dtype=np.float64)
        errors: list[Exception] = []
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as error:
                errors.append(error)
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                t = float(frame.pts * tb)
                hit = int(np.argmin(np.abs(wanted - t)))
                if abs(wanted[hit] - t) < self.tolerance_s:
                    found[hit] = frame.to_ndarray(format="rgb24")
                if t > last + self.tolerance_s:
                    return errors
        return errors

    def _drop(self, path: Path) -> None:
        container = self._open.pop(path, None)
        if container is not None:
            container.close()

    def close(self) -> None:
        for container in self._open.values():
            container.close()
        self._open.clear()
