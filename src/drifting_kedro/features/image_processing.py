"""Image-only processors for Qwen2/3-VL and SigLIP (PaliGemma), in plain torch.

transformers' own Qwen3-VL image processor needs torchvision, which cannot import beside the
CPU torch here, so the patch layout of `Qwen2VLImageProcessor` is reproduced in torch: the
same `smart_resize`, rescale, normalize and the flattened `[sum(t*h*w), C*T*P*P]` patch rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_SIGLIP_MEAN = (0.5, 0.5, 0.5)
_SIGLIP_STD = (0.5, 0.5, 0.5)


def _check_uint8_images(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}"
        )


def _check_mean_std(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"image_mean/image_std need 3 values each, got {mean} / {std}")
    if min(std) <= 0:
        raise ValueError(f"image_std must be positive, got {std}")


def _normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 → float in [0, 1] (rescale 1/255) → (x - mean) / std per channel."""
    x = images.float() / 255.0
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def _resize(images: Tensor, height: int, width: int) -> Tensor:
    """Bicubic antialiased resize of uint8 images (PIL's BICUBIC, up to rounding), kept uint8."""
    if images.shape[-2:] == (height, width):
        return images
    out = F.interpolate(
        images.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True
    )
    return out.round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# Qwen2-VL / Qwen3-VL
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QwenVLImageConfig:
    """The Qwen-VL image processor's settings (read from a model's preprocessor_config.json)."""

    patch_size: int = 16  # Qwen3-VL; Qwen2-VL uses 14
    merge_size: int = 2  # 2x2 patches merge into one language token
    temporal_patch_size: int = 2  # a still image is repeated T times
    min_pixels: int = 256 * 256  # Qwen3-VL's `size.shortest_edge`
    max_pixels: int = 4096 * 4096  # Qwen3-VL's `size.longest_edge`
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        for key in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels"):
            if getattr(self, key) < 1:
                raise ValueError(f"QwenVLImageConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_pixels < self.min_pixels:
            raise ValueError(
                f"QwenVLImageConfig.max_pixels ({self.max_pixels}) must be >= "
                f"min_pixels ({self.min_pixels})"
            )
        _check_mean_std(self.image_mean, self.image_std)

    @property
    def factor(self) -> int:
        """Resized sides are multiples of this (one merged token covers factor x factor pixels)."""
        return self.patch_size * self.merge_size


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen2-VL's target size: sides divisible by `factor`, area in [min_pixels, max_pixels]."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image aspect ratio must be below 200 for Qwen-VL, got {height}x{width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen_vl_patchify(pixels: Tensor, cfg: QwenVLImageConfig) -> Tensor:
    """Normalized images [N, C, H, W] → flat patch rows [N*gh*gw, C*T*P*P].

    Row order inside an image is merge-window major (gh/m, gw/m, m, m), the order in which the
    vision tower's patch merger groups m x m neighbours; each row is (C, T, P, P) flattened.
    """
    n, c, h, w = pixels.shape
    p, m, t = cfg.patch_size, cfg.merge_size, cfg.temporal_patch_size
    if h % (p * m) or w % (p * m):
        raise ValueError(f"image size {h}x{w} is not a multiple of patch_size*merge_size={p * m}")
    gh, gw = h // p, w // p
    x = pixels.reshape(n, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # [N, gh/m, gw/m, m, m, C, P, P]
    x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)  # [N, gh/m, gw/m, m, m, C, T, P, P]
    return x.reshape(n * gh * gw, c * t * p * p)


def qwen_vl_preprocess(images: Tensor, cfg: QwenVLImageConfig) -> tuple[Tensor, Tensor]:
    """uint8 images [N, 3, H, W] → (`pixel_values` [N*gh*gw, 3*T*P*P], `image_grid_thw` [N, 3]).

    All images share one size (views of a batch come from the same cameras' resolution), so one
    batched resize serves all; the output matches transformers' Qwen2VLImageProcessor layout.
    """
    _check_uint8_images(images)
    n, _, h, w = images.shape
    rh, rw = smart_resize(h, w, cfg.factor, cfg.min_pixels, cfg.max_pixels)
    pixels = _normalize(_resize(images, rh, rw), cfg.image_mean, cfg.image_std)  # [N, 3, rh, rw]
    pixel_values = qwen_vl_patchify(pixels, cfg)
    grid = torch.tensor([1, rh // cfg.patch_size, rw // cfg.patch_size], dtype=torch.long)
    return pixel_values, grid.unsqueeze(0).repeat(n, 1)


# ----------------------------------------------------------------------------------------------
# SigLIP (PaliGemma)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiglipImageConfig:
    """SigLIP's fixed-resolution processing: resize to a square, rescale, normalize."""

    image_size: int = 448
    image_mean: tuple[float, float, float] = _SIGLIP_MEAN
    image_std: tuple[float, float, float] = _SIGLIP_STD

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"SiglipImageConfig.image_size must be >= 1, got {self.image_size}")
        _check_mean_std(self.image_mean, self.image_std)


def siglip_preprocess(images: Tensor, cfg: SiglipImageConfig) -> Tensor:
    """uint8 images [N, 3, H, W] → normalized float `pixel_values` [N, 3, S, S]."""
    _check_uint8_images(images)
    resized = _resize(images, cfg.image_size, cfg.image_size)
    return _normalize(resized, cfg.image_mean, cfg.image_std)
