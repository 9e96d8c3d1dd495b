"""PyAV video helpers for LeRobot v3 datasets: encode like lerobot, decode by exact timestamp.

lerobot (0.6) encodes each episode to its own mp4 and appends it to the camera's shared mp4
without re-encoding: the first episode of a file is its encode as is, every later one is
remuxed after the existing packets into a new file whose `moov` atom comes first (faststart).
`encode_episode_video` and `append_episode_video` do the same with the same encoder options, so
with the same FFmpeg/SVT-AV1 build the shared files are the bytes lerobot writes
(docs/lerobot_format.md). An episode is then found by its `from_timestamp` in the shared file:
`VideoFrameReader` seeks to the preceding keyframe, decodes forward and keeps the frame whose
pts-time matches within a tolerance. Approximate seeking (by frame count or nearest packet) can
return the neighbouring frame, which silently misaligns images and actions.
"""

import io
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

# lerobot 0.6's RGB encoder defaults (lerobot/configs/video.py, VideoEncoderConfig).
DEFAULT_VCODEC = "libsvtav1"
DEFAULT_PIX_FMT = "yuv420p"
DEFAULT_GOP = 2
DEFAULT_CRF = 30
SVTAV1_PRESET = 12  # the preset lerobot gives libsvtav1 when none is configured
FAST_DECODE = 0  # SVT-AV1 fast-decode level; 0 disables it
ENCODER_BACKEND = "pyav"
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


def encoder_settings(codec: str) -> dict:
    """The encoder fields lerobot records next to a video feature's stream info in info.json."""
    return {
        "video.g": DEFAULT_GOP,
        "video.crf": DEFAULT_CRF,
        "video.preset": SVTAV1_PRESET if codec == "libsvtav1" else None,
        "video.fast_decode": FAST_DECODE,
        "video.video_backend": ENCODER_BACKEND,
        "video.extra_options": {"bf": 0} if codec == "libx264" else {},
    }


def _encoder_options(codec: str, threads: int | None = None) -> dict[str, str]:
    """The options lerobot hands the encoder for `codec`, in its order; `threads` caps its
    parallelism (SVT-AV1's `lp`), which SVT-AV1's bitstream does not depend on."""
    options = {"g": str(DEFAULT_GOP), "crf": str(DEFAULT_CRF)}
    if codec == "libsvtav1":
        params = [f"fast-decode={FAST_DECODE}", *([f"lp={threads}"] if threads else [])]
        options.update({"preset": str(SVTAV1_PRESET), "svtav1-params": ":".join(params)})
    elif codec == "libx264":
        # B-frames give negative dts at the start of each episode, which cannot be appended
        # after the previous episode in one mp4 without re-encoding.
        options["bf"] = "0"
    if threads and codec != "libsvtav1":
        options["threads"] = str(threads)
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
            frames, fps, codec, _encoder_options(codec, threads=1 if attempt > 1 else None)
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


def video_duration_s(episode_mp4: bytes) -> float:
    """An encoded episode's duration as lerobot measures it (stream duration x time base)."""
    with av.open(io.BytesIO(episode_mp4), "r") as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def append_episode_video(path: Path, episode_mp4: bytes) -> None:
    """Add one encoded episode at the end of the shared mp4 at `path`, as lerobot does.

    A new file is the episode's mp4 as encoded. Otherwise the existing packets and the
    episode's follow each other, without re-encoding, in a new file with the `moov` atom first;
    the episode's timestamps move by the existing file's duration in microseconds, rounded to
    the stream's time base the way FFmpeg's concat demuxer (which lerobot uses) rounds it.
    The file is replaced only once complete, so an interrupted append keeps the old one.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(episode_mp4)
        return
    partial = path.with_name(f".{path.name}.partial")
    try:
        with (
            av.open(str(path), "r") as existing,
            av.open(io.BytesIO(episode_mp4), "r") as episode,
            av.open(str(partial), "w", format="mp4", options={"movflags": "faststart"}) as output,
        ):
            template = existing.streams.video[0]
            stream = output.add_stream_from_template(template, opaque=True)
            stream.time_base = template.time_base
            for source, start_us in ((existing, 0), (episode, existing.duration)):
                in_stream = source.streams.video[0]
                start = Fraction(start_us, 1_000_000) / in_stream.time_base
                shift = math.floor(start + Fraction(1, 2))  # to nearest, halves up
                for packet in source.demux(in_stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = stream
                    output.mux(packet)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_video_info(path: Path) -> dict:
    """The stream part of the `info` lerobot stores for a video feature in info.json."""
    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        pix_fmt = stream.codec_context.pix_fmt or DEFAULT_PIX_FMT
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": pix_fmt,
            "video.fps": int(stream.base_rate),
            "video.channels": _pixel_channels(pix_fmt),
            "has_audio": len(container.streams.audio) > 0,
        }


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
        if not container.streams.video:  # cut inside the moov box written first
            self._drop(path)
            return [ValueError(f"{path.name} holds no video stream")]
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
