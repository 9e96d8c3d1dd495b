"""Data videos: the first episodes of a dataset, per camera, captioned, to check it by eye.

Each frame is upscaled and gets a caption bar with the instruction and the episode/frame index,
so a wrong camera key, a frozen stream or a mismatched instruction shows at a glance.
"""

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from drifting_kedro.features.frames import FrameStore
from drifting_kedro.sources.video import encode_episode_video, pick_video_codec

CAPTION_LINES = 3


def captioned(frame: np.ndarray, lines: list[str], width: int) -> np.ndarray:
    """`frame` [H, W, 3] scaled to `width` (a multiple of 16) with a caption bar below."""
    height = width * frame.shape[0] // frame.shape[1] // 2 * 2
    image = Image.fromarray(frame).resize((width, height), Image.NEAREST)
    font = ImageFont.load_default()
    line_height = 12
    canvas = Image.new("RGB", (width, height + line_height * CAPTION_LINES + 4), (0, 0, 0))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, text in enumerate(lines[:CAPTION_LINES]):
        draw.text((3, height + 2 + row * line_height), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def dataset_videos(frames_path: str, episodes: int, width: int = 256) -> dict[str, bytes]:
    """One mp4 per camera of the first `episodes` episodes: `{"<dataset>/<camera>.mp4": bytes}`."""
    store = FrameStore(frames_path)
    chosen = np.unique(store.episode_index)[:episodes]
    rows = np.flatnonzero(np.isin(store.episode_index, chosen))
    codec = pick_video_codec("libx264")
    wrap = max(16, width // 6)
    videos = {}
    for view, camera in enumerate(store.cameras):
        frames = []
        for row in rows:
            image = store.images(int(row))[view].permute(1, 2, 0).numpy()
            label = f"{store.dataset} ep {store.episode_index[row]} frame {store.frame_index[row]}"
            lines = [label, *textwrap.wrap(store.instruction(int(row)), wrap)]
            frames.append(captioned(image, lines, width))
        videos[f"{store.dataset}/{camera}.mp4"] = encode_episode_video(
            np.stack(frames), int(round(store.fps)), codec
        )
    return videos
