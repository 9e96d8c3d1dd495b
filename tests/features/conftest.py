"""Shared fixtures of the feature tests: a tiny frame store and a cheap deterministic backbone."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from drifting_kedro.features.backbone import (
    BACKBONE_FACTORIES,
    LANGUAGE_CAMERA,
    Backbone,
    BackboneOutput,
    check_encode_inputs,
    stable_hash,
)
from drifting_kedro.features.frames import FrameStoreWriter
from drifting_kedro.sources.base import Episode

CAMERAS = ["top", "wrist"]
LANGUAGES = ["pick up the cube", "insert the peg into the socket", "push the block"]


def _make_episode(index: int, length: int, size: tuple[int, int] = (16, 20)) -> Episode:
    rng = np.random.default_rng(index)
    return Episode(
        dataset="toy_sim",
        episode_index=index,
        language=LANGUAGES[index % len(LANGUAGES)],
        fps=50.0,
        action=rng.normal(size=(length, 4)).astype(np.float32),
        state=rng.normal(size=(length, 4)).astype(np.float32),
        images={c: rng.integers(0, 256, (length, *size, 3), dtype=np.uint8) for c in CAMERAS},
    )


def _write_frames(path: Path, lengths=(7, 5, 9), image_size: int = 12) -> Path:
    with FrameStoreWriter(path, "toy_sim", CAMERAS, image_size) as writer:
        for i, length in enumerate(lengths):
            writer.add_episode(_make_episode(i, length))
    return path


@pytest.fixture
def make_episode():
    """Episode i of dataset toy_sim: cameras top + wrist at 16x20, instruction LANGUAGES[i % 3]."""
    return _make_episode


@pytest.fixture
def write_frames():
    """Write a toy_sim frame store of episodes 0.. with the given lengths."""
    return _write_frames


@pytest.fixture
def frame_store_path(tmp_path: Path) -> Path:
    return _write_frames(tmp_path / "frames.h5")


class ToyBackbone(Backbone):
    """Per-view mean colour tokens + one token per instruction word: variable length, cheap."""

    name = "toy-test"
    hidden_size = 8
    random_init = True

    def __init__(self, device="cpu", scale: float = 1.0, fail_after: int | None = None):
        super().__init__()
        self.scale, self.fail_after, self.calls = scale, fail_after, 0

    def config_hash(self) -> str:
        return stable_hash({"name": self.name, "scale": self.scale})  # fail_after: no effect

    def encode(self, images: torch.Tensor, instructions: list[str]) -> BackboneOutput:
        check_encode_inputs(self.name, images, instructions)
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated kill")
        self.calls += 1
        b, v = images.shape[:2]
        colour = images.float().mean((3, 4)) / 255 * self.scale  # [B, V, 3]
        words = [len(text.split()) for text in instructions]
        length = v + max(words)
        tokens = torch.zeros(b, length, self.hidden_size)
        mask = torch.zeros(b, length, dtype=torch.bool)
        cameras = torch.full((b, length), LANGUAGE_CAMERA)
        tokens[:, :v, :3] = colour
        cameras[:, :v] = torch.arange(v)
        for j, n in enumerate(words):
            tokens[j, v : v + n, 3] = torch.arange(1, n + 1) * self.scale
            mask[j, : v + n] = True
        return BackboneOutput(tokens, mask, tokens.sum(1), cameras)


@pytest.fixture
def toy_backbone() -> Iterator[str]:
    BACKBONE_FACTORIES["toy-test"] = ToyBackbone
    yield "toy-test"
    del BACKBONE_FACTORIES["toy-test"]
