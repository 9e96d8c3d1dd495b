"""Qwen3-VL and PaliGemma 2 backbones through transformers, and their offline tiny-random twins.

``qwen3vl`` puts every view of a sample in one user message (V images, then the instruction) and
runs Qwen3-VL once; M-RoPE positions come from ``image_grid_thw`` as the model builds them.
``paligemma2`` runs SigLIP + projector on each view, then Gemma once over the image tokens of all
views followed by the prompt, as PaliGemma was trained to read them. Tokens are the last
hidden states.

The ``*-tiny-random`` twins build the same transformers classes from tiny configs with a fixed
seed and a byte-level tokenizer made in code, so the identical processor -> model -> hidden-state
path runs offline; their features are random-init. Images are processed by the plain-torch
processors of :mod:`image_processing` on both paths, so nothing needs torchvision.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import Tensor
from transformers import (
    AutoTokenizer,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from drifting_kedro.features.backbone import (
    LANGUAGE_CAMERA,
    Backbone,
    BackboneOutput,
    check_encode_inputs,
    file_sha256,
    register_backbone,
    register_preflight,
    stable_hash,
)
from drifting_kedro.features.image_processing import (
    QwenVLImageConfig,
    SiglipImageConfig,
    qwen_vl_preprocess,
    siglip_preprocess,
)

logger = logging.getLogger(__name__)

QWEN3VL_HUB_ID = "Qwen/Qwen3-VL-2B-Instruct"
PALIGEMMA2_HUB_ID = "google/paligemma2-3b-mix-448"
PROMPT_FORMAT = 1  # bump when the prompt layout changes: it changes the features

ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2")

# Qwen chat-format special tokens (the names Qwen3-VL's tokenizer and processor use)
QWEN_PAD, QWEN_IM_START, QWEN_IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
QWEN_VISION_START, QWEN_VISION_END = "<|vision_start|>", "<|vision_end|>"
QWEN_IMAGE_PAD, QWEN_VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
# PaliGemma special tokens
GEMMA_PAD, GEMMA_EOS, GEMMA_BOS, GEMMA_IMAGE = "<pad>", "<eos>", "<bos>", "<image>"


# ----------------------------------------------------------------------------------------------
# Runtime: device, dtype, attention kernel
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """Where and how a VLM runs: bf16 on CUDA, fp32 on CPU; flash-attn only on CUDA."""

    device: torch.device
    dtype: torch.dtype
    attn_implementation: str


def select_runtime(
    device: str | torch.device = "cpu",
    attn_implementation: str = "auto",
    fallback: str = "sdpa",
) -> Runtime:
    """Pick dtype and attention kernel for ``device``.

    ``auto`` takes flash-attn 2 (bf16) when the device is CUDA and ``flash_attn`` is importable,
    otherwise ``fallback`` (SDPA; eager for Gemma 2, whose soft-capped attention has no SDPA
    kernel). Forcing ``flash_attention_2`` elsewhere is an error rather than a silent fallback,
    so a run never reports a kernel it did not use.
    """
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation={attn_implementation!r} is not one of {ATTN_IMPLEMENTATIONS}"
        )
    if fallback == "eager" and attn_implementation == "sdpa":
        raise ValueError(
            "attn_implementation='sdpa' is not available for this model (Gemma 2 soft-caps its "
            "attention logits, which SDPA cannot); use 'auto' or 'eager'"
        )
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(dev)!r} requested but CUDA is not available here")
    flash_ok = dev.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
    if attn_implementation == "flash_attention_2" and not flash_ok:
        missing = "a CUDA device" if dev.type != "cuda" else "the flash_attn package"
        raise ValueError(
            f"attn_implementation='flash_attention_2' needs {missing} (device={str(dev)!r}); "
            "use attn_implementation='auto' or 'sdpa' on this machine"
        )
    if attn_implementation == "auto":
        attn_implementation = "flash_attention_2" if flash_ok else fallback
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    return Runtime(device=dev, dtype=dtype, attn_implementation=attn_implementation)


# ----------------------------------------------------------------------------------------------
# Locating weights offline
# ----------------------------------------------------------------------------------------------


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def resolve_model_dir(model_path: str | os.PathLike[str] | None, hub_id: str) -> Path:
    """A local directory holding ``hub_id``'s files: ``model_path`` or the local hub cache.

    The hub is unreachable on the machines this project runs on, so nothing is downloaded when
    ``HF_HUB_OFFLINE`` is set; a missing directory is a clear error, never a hang.
    """
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            state = "has no config.json" if path.is_dir() else "does not exist"
            raise FileNotFoundError(
                f"model_path {str(path)!r} {state}; the Hugging Face hub is unreachable here "
                f"(offline), so download {hub_id} on a machine with hub access, copy the "
                "directory here and pass it as model_path (or use the '-tiny-random' backbone)"
            )
        return path
    try:
        return Path(snapshot_download(hub_id, local_files_only=_hub_offline()))
    except Exception as exc:
        raise FileNotFoundError(
            f"{hub_id} is not in the local Hugging Face cache and the hub is unreachable/offline "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}); download it on a "
            "machine with hub access and pass model_path=<local dir> (or use the '-tiny-random' "
            "backbone)"
        ) from exc


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _without_paths(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict minus where it was loaded from, so moving a model keeps its hash."""
    return {
        k: _without_paths(v) if isinstance(v, dict) else v
        for k, v in config.items()
        if k != "_name_or_path"
    }


def _weights_fingerprint(model_dir: Path) -> dict[str, str]:
    """Content hash of every weight file, so swapping weights changes the config hash."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    return {f.name: file_sha256(str(f)) for f in files}


def _load_model(cls: type[PreTrainedModel], model_dir: Path, runtime: Runtime) -> PreTrainedModel:
    model = cls.from_pretrained(
        model_dir, dtype=runtime.dtype, attn_implementation=runtime.attn_implementation
    )
    return model.to(runtime.device).eval().requires_grad_(False)


def _freeze(model: PreTrainedModel, runtime: Runtime) -> PreTrainedModel:
    return model.to(device=runtime.device, dtype=runtime.dtype).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# Byte-level tokenizer built in code (tiny-random twins)
# ----------------------------------------------------------------------------------------------


def byte_level_tokenizer(
    special_tokens: list[str], pad_token: str, **named_tokens: str
) -> PreTrainedTokenizerFast:
    """A 256-symbol byte-level tokenizer plus ``special_tokens`` (ids 256, 257, ... in order).

    Every string is encodable (one id per UTF-8 byte), so any instruction works offline.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(special_tokens)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=pad_token, **named_tokens)


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str, model_name: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise ValueError(f"backbone {model_name!r}: the tokenizer has no special token {token!r}")
    return token_id


def _check_instructions(name: str, instructions: list[str]) -> None:
    for i, text in enumerate(instructions):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"backbone {name!r}: instruction of sample {i} is {text!r}; every observation "
                "needs its language instruction from the data"
            )


def _masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens: [B, L, H], [B, L] -> [B, H]."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)  # [B, L, 1]
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def _camera_ids(is_image: Tensor, views: int, tokens_per_view: int) -> Tensor:
    """View index of each image token (views appear in order), -1 for language: [B, L] long."""
    camera = torch.full(is_image.shape, LANGUAGE_CAMERA, dtype=torch.long, device=is_image.device)
    per_sample = torch.arange(views, device=is_image.device).repeat_interleave(tokens_per_view)
    camera[is_image] = per_sample.repeat(is_image.shape[0])
    return camera


class _HFBackbone(Backbone):
    """Shared plumbing: tokenizer, runtime, hashing and output assembly."""

    def __init__(
        self,
        *,
        name: str,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        runtime: Runtime,
        random_init: bool,
        identity: dict[str, Any],
        model_dir: Path | None,
    ) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.random_init = random_init
        self.hidden_size = int(model.config.get_text_config().hidden_size)
        self._identity = identity  # what besides weights defines the features
        self._model_dir = model_dir  # None for tiny-random (weights defined by config + seed)
        self._hash: str | None = None

    def config_hash(self) -> str:
        if self._hash is None:
            weights = _weights_fingerprint(self._model_dir) if self._model_dir else {}
            self._hash = stable_hash(
                {
                    "name": self.name,
                    "model_config": _without_paths(self.model.config.to_dict()),
                    "dtype": str(self.runtime.dtype),
                    "prompt_format": PROMPT_FORMAT,
                    "weights": weights,
                    **self._identity,
                }
            )
        return self._hash

    def _tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Right-padded ids and mask [B, L]: real tokens keep positions 0.. and ignore padding."""
        enc = self.tokenizer(
            prompts,
            padding=True,
            padding_side="right",
            add_special_tokens=False,
            return_tensors="pt",
        )
        device = self.runtime.device
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def _output(
        self, hidden: Tensor, attention_mask: Tensor, is_image: Tensor, views: int, per_view: int
    ) -> BackboneOutput:
        mask = attention_mask.bool()  # [B, L]
        tokens = hidden.float().masked_fill(~mask.unsqueeze(-1), 0.0)  # [B, L, H]
        return BackboneOutput(
            tokens=tokens,
            mask=mask,
            pooled=_masked_mean(tokens, mask),
            token_camera=_camera_ids(is_image, views, per_view),
        )


# ----------------------------------------------------------------------------------------------
# Qwen3-VL
# ----------------------------------------------------------------------------------------------


def qwen_prompt(views: int, tokens_per_view: int, instruction: str) -> str:
    """Qwen chat format: one user turn with ``views`` images then the text, then the reply cue."""
    image = QWEN_VISION_START + QWEN_IMAGE_PAD * tokens_per_view + QWEN_VISION_END
    return (
        f"{QWEN_IM_START}user\n{image * views}{instruction}{QWEN_IM_END}\n"
        f"{QWEN_IM_START}assistant\n"
    )


class Qwen3VLBackbone(_HFBackbone):
    """All views of a sample in one Qwen3-VL forward; tokens = last hidden states."""

    def __init__(
        self, image_config: QwenVLImageConfig, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(identity={"image": asdict(image_config), "seed": seed}, **kwargs)
        self.image_config = image_config
        vision = self.model.config.vision_config
        if (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) != (
            image_config.patch_size,
            image_config.merge_size,
            image_config.temporal_patch_size,
        ):
            raise ValueError(
                f"backbone {self.name!r}: image processor patch/merge/temporal sizes "
                f"{image_config} disagree with the vision config {vision}"
            )
        self.image_token_id = _token_id(self.tokenizer, QWEN_IMAGE_PAD, self.name)
        if self.image_token_id != self.model.config.image_token_id:
            raise ValueError(
                f"backbone {self.name!r}: tokenizer id of {QWEN_IMAGE_PAD} is "
                f"{self.image_token_id}, model config says {self.model.config.image_token_id}"
            )

    def encode(self, images: Tensor, instructions: list[str]) -> BackboneOutput:
        check_encode_inputs(self.name, images, instructions)
        _check_instructions(self.name, instructions)
        b, v = images.shape[:2]
        pixel_values, grid_thw = qwen_vl_preprocess(images.flatten(0, 1), self.image_config)
        per_view = int(grid_thw[0].prod()) // self.image_config.merge_size**2
        input_ids, attention_mask = self._tokenize(
            [qwen_prompt(v, per_view, text) for text in instructions]
        )
        is_image = input_ids == self.image_token_id  # [B, L]
        out = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values.to(self.runtime.device, self.runtime.dtype),
            image_grid_thw=grid_thw.to(self.runtime.device),
            mm_token_type_ids=is_image.int(),  # 1 = image: M-RoPE groups by modality
            use_cache=False,
        )
        return self._output(out.last_hidden_state, attention_mask, is_image, v, per_view)


def _qwen_image_config(
    model_dir: Path, config: Qwen3VLConfig, **overrides: int
) -> QwenVLImageConfig:
    """The processor settings of a Qwen3-VL directory (preprocessor_config.json), with overrides."""
    pre = _read_json(model_dir / "preprocessor_config.json")
    size = pre.get("size") or {}
    vision, default = config.vision_config, QwenVLImageConfig()
    values: dict[str, Any] = {
        "patch_size": pre.get("patch_size", vision.patch_size),
        "merge_size": pre.get("merge_size", vision.spatial_merge_size),
        "temporal_patch_size": pre.get("temporal_patch_size", vision.temporal_patch_size),
        "min_pixels": pre.get("min_pixels", size.get("shortest_edge", default.min_pixels)),
        "max_pixels": pre.get("max_pixels", size.get("longest_edge", default.max_pixels)),
    }
    if "image_mean" in pre:
        values["image_mean"] = tuple(pre["image_mean"])
        values["image_std"] = tuple(pre["image_std"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return QwenVLImageConfig(**values)


@register_preflight("qwen3vl")
def _qwen3vl_preflight(
    device: str = "cpu", model_path: str | None = None, attn_implementation: str = "auto", **_: Any
) -> None:
    select_runtime(device, attn_implementation)
    resolve_model_dir(model_path, QWEN3VL_HUB_ID)


@register_backbone("qwen3vl")
def build_qwen3vl(
    device: str | torch.device = "cpu",
    model_path: str | None = None,
    attn_implementation: str = "auto",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> Qwen3VLBackbone:
    """Qwen/Qwen3-VL-2B-Instruct from ``model_path`` or the local hub cache."""
    runtime = select_runtime(device, attn_implementation)
    model_dir = resolve_model_dir(model_path, QWEN3VL_HUB_ID)
    model = _load_model(Qwen3VLForConditionalGeneration, model_dir, runtime)
    image_config = _qwen_image_config(
        model_dir, model.config, min_pixels=min_pixels, max_pixels=max_pixels
    )
    logger.info("qwen3vl from %s (%s, %s)", model_dir, runtime.dtype, runtime.attn_implementation)
    return Qwen3VLBackbone(
        name="qwen3vl",
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(model_dir),
        runtime=runtime,
        random_init=False,
        image_config=image_config,
        model_dir=model_dir,
    )


def qwen3vl_tiny_config(vocab_size: int, token_ids: dict[str, int]) -> Qwen3VLConfig:
    """Qwen3-VL with 2 text layers (hidden 64) and a 2-block vision tower, patch 8, merge 2.

    A 64x64 view is 8x8 patches -> 16 language tokens; M-RoPE sections [4, 2, 2] fill the
    16-dim heads' 8 frequencies.
    """
    return Qwen3VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "pad_token_id": token_ids[QWEN_PAD],
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,  # an 8x8 learned grid, interpolated per image
            "deepstack_visual_indexes": [0],
        },
        image_token_id=token_ids[QWEN_IMAGE_PAD],
        video_token_id=token_ids[QWEN_VIDEO_PAD],
        vision_start_token_id=token_ids[QWEN_VISION_START],
        vision_end_token_id=token_ids[QWEN_VISION_END],
    )


@register_backbone("qwen3vl-tiny-random")
def build_qwen3vl_tiny_random(
    device: str | torch.device = "cpu",
    seed: int = 0,
    attn_implementation: str = "auto",
    min_pixels: int = 16 * 16,
    max_pixels: int = 128 * 128,
) -> Qwen3VLBackbone:
    """Qwen3VLForConditionalGeneration with a tiny config, seeded random weights, offline."""
    runtime = select_runtime(device, attn_implementation)
    specials = [QWEN_PAD, QWEN_IM_START, QWEN_IM_END, QWEN_VISION_START, QWEN_VISION_END]
    specials += [QWEN_IMAGE_PAD, QWEN_VIDEO_PAD]
    tokenizer = byte_level_tokenizer(specials, pad_token=QWEN_PAD, eos_token=QWEN_IM_END)
    config = qwen3vl_tiny_config(len(tokenizer), tokenizer.get_vocab())
    config._attn_implementation = runtime.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _freeze(Qwen3VLForConditionalGeneration(config), runtime)
    vision = config.vision_config
    image_config = QwenVLImageConfig(
        patch_size=vision.patch_size,
        merge_size=vision.spatial_merge_size,
        temporal_patch_size=vision.temporal_patch_size,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )
    return Qwen3VLBackbone(
        name="qwen3vl-tiny-random",
        model=model,
        tokenizer=tokenizer,
        runtime=runtime,
        random_init=True,
        image_config=image_config,
        model_dir=None,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------
# PaliGemma 2
# ----------------------------------------------------------------------------------------------


class PaliGemma2Backbone(_HFBackbone):
    """SigLIP + projector per view, then Gemma once over [all views' image tokens; prompt]."""

    def __init__(
        self, image_config: SiglipImageConfig, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(identity={"image": asdict(image_config), "seed": seed}, **kwargs)
        self.image_config = image_config
        vision = self.model.config.vision_config
        if vision.image_size != image_config.image_size:
            raise ValueError(
                f"backbone {self.name!r}: image processor size {image_config.image_size} "
                f"disagrees with the vision tower's image_size {vision.image_size}"
            )
        self.tokens_per_view = (vision.image_size // vision.patch_size) ** 2
        self.image_token_id = _token_id(self.tokenizer, GEMMA_IMAGE, self.name)
        if self.image_token_id != self.model.config.image_token_id:
            raise ValueError(
                f"backbone {self.name!r}: tokenizer id of {GEMMA_IMAGE} is "
                f"{self.image_token_id}, model config says {self.model.config.image_token_id}"
            )

    def encode(self, images: Tensor, instructions: list[str]) -> BackboneOutput:
        check_encode_inputs(self.name, images, instructions)
        _check_instructions(self.name, instructions)
        b, v = images.shape[:2]
        pixel_values = siglip_preprocess(images.flatten(0, 1), self.image_config)  # [B*V, 3, S, S]
        image_block = GEMMA_IMAGE * (v * self.tokens_per_view)
        bos = self.tokenizer.bos_token
        # PaliGemma's processor layout: image tokens, <bos>, prompt, "\n"
        input_ids, attention_mask = self._tokenize(
            [f"{image_block}{bos}{text}\n" for text in instructions]
        )
        is_image = input_ids == self.image_token_id  # [B, L]
        # pixel_values [B*V] run through SigLIP + projector image by image (views never mix);
        # the features fill the image tokens of sample 0 views 0..V-1, then sample 1, ...
        out = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values.to(self.runtime.device, self.runtime.dtype),
            token_type_ids=torch.zeros_like(input_ids),  # all prefix: bidirectional attention
            use_cache=False,
        )
        per_view = self.tokens_per_view
        return self._output(out.last_hidden_state, attention_mask, is_image, v, per_view)


def _siglip_image_config(model_dir: Path, config: PaliGemmaConfig) -> SiglipImageConfig:
    pre = _read_json(model_dir / "preprocessor_config.json")
    size = pre.get("size") or {}
    values: dict[str, Any] = {"image_size": size.get("height", config.vision_config.image_size)}
    if "image_mean" in pre:
        values["image_mean"] = tuple(pre["image_mean"])
        values["image_std"] = tuple(pre["image_std"])
    return SiglipImageConfig(**values)


@register_preflight("paligemma2")
def _paligemma2_preflight(
    device: str = "cpu", model_path: str | None = None, attn_implementation: str = "auto", **_: Any
) -> None:
    select_runtime(device, attn_implementation, fallback="eager")
    resolve_model_dir(model_path, PALIGEMMA2_HUB_ID)


@register_backbone("paligemma2")
def build_paligemma2(
    device: str | torch.device = "cpu",
    model_path: str | None = None,
    attn_implementation: str = "auto",
) -> PaliGemma2Backbone:
    """google/paligemma2-3b-mix-448 from ``model_path`` or the local hub cache."""
    runtime = select_runtime(device, attn_implementation, fallback="eager")
    model_dir = resolve_model_dir(model_path, PALIGEMMA2_HUB_ID)
    model = _load_model(PaliGemmaForConditionalGeneration, model_dir, runtime)
    logger.info(
        "paligemma2 from %s (%s, %s)", model_dir, runtime.dtype, runtime.attn_implementation
    )
    return PaliGemma2Backbone(
        name="paligemma2",
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(model_dir),
        runtime=runtime,
        random_init=False,
        image_config=_siglip_image_config(model_dir, model.config),
        model_dir=model_dir,
    )


def paligemma2_tiny_config(vocab_size: int, token_ids: dict[str, int]) -> PaliGemmaConfig:
    """PaliGemma: 2-layer SigLIP (64x64 input, patch 16 -> 16 tokens), 2-layer Gemma 2."""
    return PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "gemma2",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 512,
            "max_position_embeddings": 4096,
            "pad_token_id": token_ids[GEMMA_PAD],
            "bos_token_id": token_ids[GEMMA_BOS],
            "eos_token_id": token_ids[GEMMA_EOS],
        },
        image_token_index=token_ids[GEMMA_IMAGE],
        vocab_size=vocab_size,
        projection_dim=64,
        hidden_size=64,
    )


@register_backbone("paligemma2-tiny-random")
def build_paligemma2_tiny_random(
    device: str | torch.device = "cpu", seed: int = 0, attn_implementation: str = "auto"
) -> PaliGemma2Backbone:
    """PaliGemmaForConditionalGeneration with a tiny config, seeded random weights, offline."""
    runtime = select_runtime(device, attn_implementation, fallback="eager")
    tokenizer = byte_level_tokenizer(
        [GEMMA_PAD, GEMMA_EOS, GEMMA_BOS, GEMMA_IMAGE],
        pad_token=GEMMA_PAD,
        bos_token=GEMMA_BOS,
        eos_token=GEMMA_EOS,
    )
    config = paligemma2_tiny_config(len(tokenizer), tokenizer.get_vocab())
    config._attn_implementation = runtime.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _freeze(PaliGemmaForConditionalGeneration(config), runtime)
    return PaliGemma2Backbone(
        name="paligemma2-tiny-random",
        model=model,
        tokenizer=tokenizer,
        runtime=runtime,
        random_init=True,
        image_config=SiglipImageConfig(image_size=config.vision_config.image_size),
        model_dir=None,
        seed=seed,
    )
