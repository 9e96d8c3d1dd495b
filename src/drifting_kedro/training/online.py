"""Online-VLM training: the backbone encodes each batch inside the step, with staged LoRA.

Pi0-style staging: the VLM is frozen for the first ``lora_start_step`` steps
(gradients of a random generator would corrupt it), then LoRA adapters on the q/v projections
of its last ``lora_layers`` language-model layers train at ``lr * lora_lr_ratio``.

The adapters are injected when the trainer is built (requires_grad False) and only switched on
at the start step, so nothing is rebuilt mid-run and a resumed run sees the same modules.
They have their own AdamW and schedule because ``get_state_dict`` maps every parameter of the
policy's optimizer to a name inside the DDP/FSDP-wrapped policy and fails on any other. The
backbone stays outside DDP (DDP only syncs parameters that required grad when it wrapped them),
so the adapter gradients are averaged over ranks here, once per optimizer step.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from drifting_kedro.features.backbone import LANGUAGE_CAMERA, Backbone, build_backbone
from drifting_kedro.training.config import TrainConfig

logger = logging.getLogger(__name__)

# q/v projections of the language model's attention (Qwen3-VL and Gemma 2 name them alike)
_LORA_TARGET = re.compile(r"(?:^|\.)language_model\.layers\.(\d+)\.self_attn\.(?:q_proj|v_proj)$")


#################################################################################
#                                 LoRA adapters                                 #
#################################################################################


def lora_target_modules(backbone: Backbone, layers: int) -> list[str]:
    """Names (in ``backbone``) of the q/v projections of the last ``layers`` LM layers."""
    found = [
        (int(match.group(1)), name)
        for name, _ in backbone.named_modules()
        if (match := _LORA_TARGET.search(name))
    ]
    if not found:
        raise ValueError(
            f"online LoRA needs a transformers VLM with language-model q/v projections "
            f"(qwen3vl or paligemma2; qwen3vl-tiny-random offline); backbone "
            f"{backbone.name!r} has none"
        )
    depth = max(index for index, _ in found) + 1
    if layers > depth:
        raise ValueError(
            f"train.lora_layers={layers} but backbone {backbone.name!r} has {depth} "
            "language-model layers"
        )
    return sorted(name for index, name in found if index >= depth - layers)


def apply_lora(
    backbone: Backbone, *, rank: int, alpha: float, layers: int, seed: int = 0
) -> list[nn.Parameter]:
    """Inject LoRA adapters (peft) into ``backbone``; returns them frozen, in a fixed order.

    Initialised from ``seed`` so every rank starts from the same adapters without a broadcast.
    The base weights stay frozen; only the returned parameters are ever trained.
    """
    from peft import LoraConfig, inject_adapter_in_model  # heavy import: online mode only

    targets = lora_target_modules(backbone, layers)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, backbone)
    backbone.requires_grad_(False)
    params = [p for _, p in lora_named_parameters(backbone)]
    logger.info(
        "LoRA r=%d alpha=%g on %d projections of %s: %d parameters",
        rank, alpha, len(targets), backbone.name, sum(p.numel() for p in params),
    )  # fmt: skip
    return params


def lora_named_parameters(backbone: Backbone) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in backbone.named_parameters() if ".lora_" in n]


def lora_state(backbone: Backbone) -> dict[str, Tensor]:
    """The adapter weights only (the base weights come from the backbone's own source)."""
    return {name: p.detach().cpu().clone() for name, p in lora_named_parameters(backbone)}


def load_lora_state(backbone: Backbone, state: dict[str, Tensor]) -> None:
    """Copy adapter weights saved by :func:`lora_state` into a backbone given the same LoRA."""
    params = dict(lora_named_parameters(backbone))
    if set(params) != set(state):
        raise ValueError(
            f"LoRA weights do not fit backbone {backbone.name!r}: missing "
            f"{sorted(set(params) - set(state))[:3]}, unexpected "
            f"{sorted(set(state) - set(params))[:3]}; rebuild it with the checkpoint's LoRA "
            "settings (backbone_from_checkpoint)"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])


def backbone_from_checkpoint(checkpoint: dict, device: str | torch.device = "cpu") -> Backbone:
    """The backbone an online-VLM checkpoint was trained with, its LoRA weights loaded, frozen."""
    online = checkpoint.get("online_vlm")
    if not online:
        raise ValueError(
            "this checkpoint was trained on precomputed features (no online_vlm entry); build "
            "the backbone of its feature store instead"
        )
    backbone = build_backbone(online["backbone"], device, **online["options"])
    apply_lora(backbone, **online["lora_config"])
    load_lora_state(backbone, online["lora"])
    return backbone.eval().requires_grad_(False)


#################################################################################
#                                 Online samples                                #
#################################################################################


def encode_batch(backbone: Backbone, images: list[Tensor], instructions: list[str]) -> dict:
    """Backbone features of a batch, as the policy's keywords (padded like `collate_features`).

    Datasets differ in cameras, so samples are encoded in groups of equal view count and size,
    then padded to the longest sequence. Gradients flow when grad mode is on.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    device = next(backbone.parameters()).device
    outputs = [
        backbone.encode(
            torch.stack([images[i] for i in members]).to(device),  # [b, V, 3, S, S]
            [instructions[i] for i in members],
        )
        for members in groups.values()
    ]
    length = max(out.tokens.shape[1] for out in outputs)
    order = torch.tensor([i for members in groups.values() for i in members])
    inverse = torch.argsort(order).to(device)  # grouped order -> the batch's order

    def padded(key: str, fill: float) -> Tensor:
        parts = [getattr(out, key) for out in outputs]  # [b, l(, H)]
        pads = [(0, 0) * (p.dim() - 2) + (0, length - p.shape[1]) for p in parts]
        return torch.cat([F.pad(p, pad, value=fill) for p, pad in zip(parts, pads, strict=True)])

    return {
        "vlm_tokens": padded("tokens", 0.0)[inverse],  # [B, L, H]
        "vlm_mask": padded("mask", False)[inverse],  # [B, L]
        "token_camera": padded("token_camera", LANGUAGE_CAMERA)[inverse],  # [B, L]
        "pooled": torch.cat([out.pooled for out in outputs])[inverse],  # [B, H]
    }


#################################################################################
#                                 Staged training                               #
#################################################################################


@dataclass
class OnlineVLM:
    """The backbone of online training and its adapters' optimizer; one per rank."""

    backbone: Backbone
    options: dict[str, Any]  # build_backbone keywords, kept for checkpoints
    lora_config: dict[str, Any]  # apply_lora keywords, kept for checkpoints
    lora: list[nn.Parameter]
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    start_step: int
    grad_clip: float

    def trains(self, step: int) -> bool:
        return step >= self.start_step

    def encode(self, batch: dict, step: int) -> dict:
        """Add the backbone's features to a batch: under no_grad before the start step."""
        trains = self.trains(step)
        for p in self.lora:
            p.requires_grad_(trains)
        with torch.set_grad_enabled(trains):
            return {**batch, **encode_batch(self.backbone, batch["images"], batch["instruction"])}

    def optimizer_step(self, step: int) -> dict[str, float]:
        """Average adapter gradients over ranks, clip, step; the schedule advances every step.

        Before the start step no adapter has a gradient and AdamW leaves them untouched.
        """
        stats = {}
        if self.trains(step):
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.lora]
            flat = torch.cat([g.flatten() for g in grads])
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
            for p, g in zip(self.lora, flat.split([g.numel() for g in grads]), strict=True):
                p.grad = g.view_as(p)
            stats["train/lora_grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(self.lora, self.grad_clip)
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return {**stats, "train/lora_lr": self.scheduler.get_last_lr()[0]}

    def state_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone.name,
            "options": self.options,
            "lora_config": self.lora_config,
            "lora": lora_state(self.backbone),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["backbone"], state["lora_config"]) != (self.backbone.name, self.lora_config):
            raise ValueError(
                f"checkpoint's online VLM is {state['backbone']!r} with LoRA "
                f"{state['lora_config']}, this run's is {self.backbone.name!r} with "
                f"{self.lora_config}; resume with the same train.online_backbone and lora_*"
            )
        load_lora_state(self.backbone, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def build_online_vlm(
    cfg: TrainConfig, device: torch.device, schedule: Callable[[int], float]
) -> OnlineVLM:
    """Backbone + frozen adapters + their AdamW at ``lr * lora_lr_ratio`` on ``schedule``."""
    backbone = build_backbone(cfg.online_backbone, device, **cfg.online_backbone_options)
    lora_config = {
        "rank": cfg.lora_rank,
        "alpha": cfg.lora_alpha,
        "layers": cfg.lora_layers,
        "seed": cfg.seed,
    }
    lora = apply_lora(backbone, **lora_config)
    optimizer = torch.optim.AdamW(
        lora, lr=cfg.lr * cfg.lora_lr_ratio, betas=cfg.betas, weight_decay=0.0
    )
    if cfg.lora_start_step >= cfg.max_steps:
        logger.warning(
            "train.lora_start_step=%d >= max_steps=%d: the online VLM stays frozen",
            cfg.lora_start_step, cfg.max_steps,
        )  # fmt: skip
    return OnlineVLM(
        backbone=backbone.eval(),
        options=dict(cfg.online_backbone_options),
        lora_config=lora_config,
        lora=lora,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
        start_step=cfg.lora_start_step,
        grad_clip=cfg.grad_clip,
    )
