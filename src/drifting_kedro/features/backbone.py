"""The one interface every VLM backbone implements, and the registry that builds them by name.

Backbones register a factory with :func:`register_backbone`; :func:`build_backbone` imports the
module that holds a name only when that name is asked for, so asking for ``small-real`` never
imports ``transformers``.
"""

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

LANGUAGE_CAMERA = -1  # token_camera value of language tokens

# name -> module that registers it on import (lazy: heavy imports only when asked for)
_BACKBONE_MODULES: dict[str, str] = {
    "small-real": "drifting_kedro.features.small_real",
    "qwen3vl": "drifting_kedro.features.hf_vlm",
    "qwen3vl-tiny-random": "drifting_kedro.features.hf_vlm",
    "paligemma2": "drifting_kedro.features.hf_vlm",
    "paligemma2-tiny-random": "drifting_kedro.features.hf_vlm",
}
BACKBONE_FACTORIES: dict[str, Callable[..., "Backbone"]] = {}
# name -> check(device=..., **options) that finds the weights without loading them
BACKBONE_PREFLIGHTS: dict[str, Callable[..., None]] = {}


@dataclass
class BackboneOutput:
    """Hidden states of a batch of observations, padded to the batch's longest sequence."""

    tokens: Tensor  # [B, L, H] float
    mask: Tensor  # [B, L] bool, True = real token
    pooled: Tensor  # [B, H]
    token_camera: Tensor  # [B, L] long: view index of each token, LANGUAGE_CAMERA for language

    def __post_init__(self) -> None:
        b, length, h = self.tokens.shape
        if self.mask.shape != (b, length) or self.token_camera.shape != (b, length):
            raise ValueError(
                f"BackboneOutput: mask {tuple(self.mask.shape)} and token_camera "
                f"{tuple(self.token_camera.shape)} must both be [B, L] = {(b, length)}"
            )
        if self.pooled.shape != (b, h):
            raise ValueError(
                f"BackboneOutput: pooled {tuple(self.pooled.shape)} must be [B, H] = {(b, h)}"
            )


class Backbone(nn.Module, ABC):
    """Images of every view + an instruction -> token features, for precompute and online training.

    ``encode`` runs with gradients when grad is enabled (online training) and under
    ``torch.no_grad()`` for precompute; ``forward`` is ``encode`` so DDP/FSDP can wrap it.
    """

    name: str
    hidden_size: int
    random_init: bool  # True for *-tiny-random: features must be labelled as such downstream

    @abstractmethod
    def config_hash(self) -> str:
        """Stable hash of everything that changes the features (weights, processor, layout)."""

    @abstractmethod
    def encode(self, images: Tensor, instructions: list[str]) -> BackboneOutput:
        """Encode uint8 images ``[B, V, 3, H, W]`` with one instruction per sample."""

    def forward(self, images: Tensor, instructions: list[str]) -> BackboneOutput:
        return self.encode(images, instructions)


def check_encode_inputs(name: str, images: Tensor, instructions: list[str]) -> None:
    """Raise a clear error for inputs ``encode`` cannot take (shared by every backbone)."""
    if images.dtype != torch.uint8 or images.dim() != 5 or images.shape[2] != 3:
        raise ValueError(
            f"backbone {name!r}: images must be uint8 [B, V, 3, H, W], got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    if len(instructions) != images.shape[0]:
        raise ValueError(
            f"backbone {name!r}: {len(instructions)} instructions for a batch of "
            f"{images.shape[0]} observations; pass one instruction per sample"
        )


def stable_hash(config: dict[str, Any]) -> str:
    """Short sha256 of a JSON-serialisable description; key order does not matter."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str, chunk_bytes: int = 1 << 22) -> str:
    """Content hash of a weight file, so swapping weights changes the config hash."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator: register ``factory(device="cpu", **options) -> Backbone`` under ``name``."""

    def decorate(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        BACKBONE_FACTORIES[name] = factory
        return factory

    return decorate


def register_preflight(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: register a cheap check that ``name``'s weights and options are usable here."""

    def decorate(check: Callable[..., None]) -> Callable[..., None]:
        BACKBONE_PREFLIGHTS[name] = check
        return check

    return decorate


def check_backbone(name: str, device: str = "cpu", **options: Any) -> None:
    """Fail fast, before any process is launched: unknown name, missing weights, CUDA-only
    options on a CPU machine; each error names the option and what to do."""
    if name in _BACKBONE_MODULES:
        importlib.import_module(_BACKBONE_MODULES[name])
    if name not in BACKBONE_FACTORIES:
        raise ValueError(
            f"features.backbone={name!r} is unknown; available: {', '.join(available_backbones())}"
        )
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"features.device={device!r} but this machine has no CUDA device; use device: cpu"
        )
    if name in BACKBONE_PREFLIGHTS:
        BACKBONE_PREFLIGHTS[name](device=device, **options)


def available_backbones() -> list[str]:
    """Every name :func:`build_backbone` accepts (registered or importable on demand)."""
    return sorted(set(_BACKBONE_MODULES) | set(BACKBONE_FACTORIES))


def build_backbone(name: str, device: str | torch.device = "cpu", **options: Any) -> Backbone:
    """Build a registered backbone by name, importing its module only now."""
    if name not in BACKBONE_FACTORIES and name in _BACKBONE_MODULES:
        importlib.import_module(_BACKBONE_MODULES[name])
    if name not in BACKBONE_FACTORIES:
        raise ValueError(
            f"unknown backbone {name!r}; available: {', '.join(available_backbones())}"
        )
    return BACKBONE_FACTORIES[name](device=device, **options)
