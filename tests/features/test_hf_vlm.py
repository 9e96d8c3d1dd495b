"""Qwen3-VL / PaliGemma 2 backbones: tiny-random twins end to end offline, processors, errors."""

import json
from pathlib import Path

import pytest
import torch

from drifting_kedro.features.backbone import (
    LANGUAGE_CAMERA,
    Backbone,
    available_backbones,
    build_backbone,
)
from drifting_kedro.features.hf_vlm import (
    PALIGEMMA2_HUB_ID,
    QWEN3VL_HUB_ID,
    resolve_model_dir,
    select_runtime,
)
from drifting_kedro.features.image_processing import (
    QwenVLImageConfig,
    SiglipImageConfig,
    qwen_vl_patchify,
    qwen_vl_preprocess,
    siglip_preprocess,
    smart_resize,
)

TINY = ["qwen3vl-tiny-random", "paligemma2-tiny-random"]
TOKENS_PER_VIEW = {"qwen3vl-tiny-random": 16, "paligemma2-tiny-random": 16}  # 64x64 views
INSTRUCTIONS = ["pick up the red cube and hand it over", "insert"]


def dummy_images(seed: int = 0, shape=(2, 2, 3, 64, 64)) -> torch.Tensor:
    return torch.randint(
        0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.fixture(scope="module", params=TINY)
def tiny(request) -> Backbone:
    return build_backbone(request.param)


def encode(backbone: Backbone, images: torch.Tensor, instructions: list[str]):
    with torch.no_grad():
        return backbone.encode(images, instructions)


# ---------------------------------------------------------------------------------------------
# tiny-random backbones end to end
# ---------------------------------------------------------------------------------------------


def test_registered_names():
    for name in ("qwen3vl", "paligemma2", *TINY):
        assert name in available_backbones()


def test_tiny_output_shapes_mask_and_cameras(tiny):
    out = encode(tiny, dummy_images(), INSTRUCTIONS)
    b, length, h = out.tokens.shape
    assert (b, h) == (2, tiny.hidden_size) and tiny.random_init
    assert out.mask.dtype == torch.bool and out.token_camera.dtype == torch.long
    lengths = out.mask.sum(1)
    assert lengths[0] == length and lengths[1] < length  # longer instruction sets L
    # right padding: the mask is a prefix, padded rows are zero and carry no camera
    assert torch.equal(out.mask, torch.arange(length) < lengths[:, None])
    assert out.tokens[~out.mask].abs().sum() == 0
    assert (out.token_camera[~out.mask] == LANGUAGE_CAMERA).all()
    per_view = TOKENS_PER_VIEW[tiny.name]
    for row in out.token_camera:
        assert [(row == v).sum().item() for v in (0, 1)] == [per_view, per_view]
        assert row.max() == 1 and set(row.unique().tolist()) == {LANGUAGE_CAMERA, 0, 1}
    expected = (out.tokens * out.mask[..., None]).sum(1) / lengths[:, None]
    torch.testing.assert_close(out.pooled, expected)


def test_tiny_view_order_in_token_camera(tiny):
    row = encode(tiny, dummy_images(), INSTRUCTIONS).token_camera[0]
    image_cams = row[row != LANGUAGE_CAMERA]
    assert torch.equal(image_cams, torch.arange(2).repeat_interleave(TOKENS_PER_VIEW[tiny.name]))
    if tiny.name.startswith("paligemma"):  # all views' image tokens come before the prompt
        assert (row[: image_cams.numel()] != LANGUAGE_CAMERA).all()


def test_tiny_padding_does_not_change_real_tokens(tiny):
    both = encode(tiny, dummy_images(), INSTRUCTIONS)
    alone = encode(tiny, dummy_images()[1:], INSTRUCTIONS[1:])
    n = int(alone.mask.sum())
    torch.testing.assert_close(both.tokens[1, :n], alone.tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both.pooled[1], alone.pooled[0], atol=1e-5, rtol=1e-5)


def test_tiny_deterministic_per_seed_and_sensitive_to_inputs(tiny):
    again = build_backbone(tiny.name)
    other_seed = build_backbone(tiny.name, seed=1)
    images = dummy_images()
    first = encode(tiny, images, INSTRUCTIONS)
    assert torch.equal(first.tokens, encode(again, images, INSTRUCTIONS).tokens)
    assert tiny.config_hash() == again.config_hash() != other_seed.config_hash()
    assert not torch.allclose(first.tokens, encode(other_seed, images, INSTRUCTIONS).tokens)
    changed_view = images.clone()
    changed_view[:, 1] = dummy_images(seed=7)[:, 1]  # only the second camera differs
    moved = encode(tiny, changed_view, INSTRUCTIONS)
    assert not torch.allclose(first.pooled, moved.pooled)
    reworded = encode(tiny, images, ["pick up the red cube and hand it back", "insert"])
    assert not torch.allclose(first.pooled[0], reworded.pooled[0])


def test_qwen_tiny_uses_mrope_positions_from_image_grid():
    backbone = build_backbone("qwen3vl-tiny-random")
    encode(backbone, dummy_images(), INSTRUCTIONS)
    # 16 image tokens of a 4x4 merged grid span only 4 positions: M-RoPE shifts text back
    deltas = backbone.model.model.rope_deltas
    assert deltas is not None and (deltas == -2 * (16 - 4)).all()


def test_tiny_accepts_other_sizes_and_view_counts(tiny):
    out = encode(tiny, dummy_images(shape=(1, 3, 3, 48, 80)), ["push"])
    assert set(out.token_camera[0].unique().tolist()) == {LANGUAGE_CAMERA, 0, 1, 2}


def test_bad_inputs_name_the_problem(tiny):
    with pytest.raises(ValueError, match="uint8"):
        tiny.encode(dummy_images().float(), INSTRUCTIONS)
    with pytest.raises(ValueError, match="one instruction per sample"):
        tiny.encode(dummy_images(), INSTRUCTIONS[:1])
    with pytest.raises(ValueError, match="instruction of sample 1"):
        tiny.encode(dummy_images(), ["pick", "  "])


# ---------------------------------------------------------------------------------------------
# the real loading path (from_pretrained + AutoTokenizer + preprocessor_config.json), offline
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tiny_name", "real_name", "preprocessor"),
    [
        (
            "qwen3vl-tiny-random",
            "qwen3vl",
            {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 2,
             "size": {"shortest_edge": 256, "longest_edge": 16384},
             "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
        ),
        (
            "paligemma2-tiny-random",
            "paligemma2",
            {"size": {"height": 64, "width": 64},
             "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
        ),
    ],
)  # fmt: skip
def test_model_path_loads_a_saved_model_like_the_real_one(
    tmp_path, tiny_name, real_name, preprocessor
):
    tiny, model_dir = build_backbone(tiny_name), tmp_path / "model"
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    (model_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    loaded = build_backbone(real_name, model_path=str(model_dir))
    assert loaded.name == real_name and not loaded.random_init
    images = dummy_images()
    torch.testing.assert_close(
        encode(loaded, images, INSTRUCTIONS).tokens, encode(tiny, images, INSTRUCTIONS).tokens
    )
    hash_before = loaded.config_hash()
    moved = model_dir.rename(tmp_path / "moved")
    assert build_backbone(real_name, model_path=str(moved)).config_hash() == hash_before


@pytest.mark.parametrize("name", ["qwen3vl", "paligemma2"])
def test_missing_model_path_is_a_clear_offline_error(tmp_path, name):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        build_backbone(name, model_path=str(missing))
    assert str(missing) in str(err.value) and "offline" in str(err.value)


def test_uncached_hub_id_is_a_clear_offline_error():
    with pytest.raises(FileNotFoundError, match="unreachable/offline") as err:
        resolve_model_dir(None, "drifting-kedro-tests/no-such-model")
    assert "drifting-kedro-tests/no-such-model" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, hub_id", [("qwen3vl", QWEN3VL_HUB_ID), ("paligemma2", PALIGEMMA2_HUB_ID)]
)
def test_real_weights_when_present_locally(name, hub_id):
    try:
        resolve_model_dir(None, hub_id)
    except FileNotFoundError:
        pytest.skip(f"{hub_id} weights are not in the local Hugging Face cache (hub unreachable)")
    backbone = build_backbone(name)
    out = encode(backbone, dummy_images(shape=(1, 2, 3, 448, 448)), ["pick up the cube"])
    assert out.tokens.shape[-1] == backbone.hidden_size and not backbone.random_init
    assert torch.isfinite(out.tokens).all()
    assert set(out.token_camera[0].unique().tolist()) == {LANGUAGE_CAMERA, 0, 1}


# ---------------------------------------------------------------------------------------------
# runtime selection
# ---------------------------------------------------------------------------------------------


def test_runtime_on_cpu_is_fp32_sdpa_or_eager():
    runtime = select_runtime("cpu")
    assert (runtime.dtype, runtime.attn_implementation) == (torch.float32, "sdpa")
    assert select_runtime("cpu", fallback="eager").attn_implementation == "eager"


@pytest.mark.parametrize("name", TINY)
def test_forcing_flash_attention_on_cpu_is_a_clear_error(name):
    with pytest.raises(ValueError, match="flash_attention_2' needs a CUDA device"):
        build_backbone(name, attn_implementation="flash_attention_2")


def test_bad_attention_choices():
    with pytest.raises(ValueError, match="is not one of"):
        select_runtime("cpu", "flash")
    with pytest.raises(ValueError, match="Gemma 2"):
        build_backbone("paligemma2-tiny-random", attn_implementation="sdpa")


# ---------------------------------------------------------------------------------------------
# image-only processors
# ---------------------------------------------------------------------------------------------


def test_patch_rows_follow_merge_windows_by_hand():
    """4x4 patches of 1 pixel, merge 2: rows go window by window, (C, T, P, P) inside a row."""
    cfg = QwenVLImageConfig(patch_size=1, merge_size=2, temporal_patch_size=2, min_pixels=1)
    image = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4)  # pixel value = its index
    rows = qwen_vl_patchify(image, cfg)
    assert rows.shape == (16, 3 * 2)
    order = [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
    assert rows[:, 0].tolist() == order
    assert (rows == rows[:, :1]).all()  # every channel and both temporal copies agree


def test_qwen_preprocess_matches_transformers_reference():
    pil = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    mean, std = (0.48, 0.45, 0.40), (0.27, 0.26, 0.28)
    reference = pil.Qwen2VLImageProcessorPil(
        patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=256, max_pixels=10**6,
        image_mean=list(mean), image_std=list(std),
    )  # fmt: skip
    cfg = QwenVLImageConfig(8, 2, 2, 256, 10**6, mean, std)
    images = dummy_images(shape=(3, 3, 64, 96))  # already a multiple of 16: no resize
    expected = reference([im.permute(1, 2, 0).numpy() for im in images], return_tensors="pt")
    pixel_values, grid_thw = qwen_vl_preprocess(images, cfg)
    assert torch.equal(grid_thw, expected["image_grid_thw"])
    torch.testing.assert_close(pixel_values, expected["pixel_values"], atol=1e-6, rtol=1e-6)
    for h, w in [(64, 64), (50, 70), (480, 640), (20, 900)]:
        assert smart_resize(h, w, 32, 256 * 256, 4096**2) == pil.smart_resize(
            h, w, 32, 256 * 256, 4096**2
        )


def test_qwen_resize_is_close_to_pil_bicubic():
    pil = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    reference = pil.Qwen2VLImageProcessorPil(
        patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=256, max_pixels=10**6
    )
    cfg = QwenVLImageConfig(8, 2, 2, 256, 10**6, pil.OPENAI_CLIP_MEAN, pil.OPENAI_CLIP_STD)
    ramp = torch.linspace(0, 255, 70).round().to(torch.uint8)
    image = torch.stack([ramp[None, :].expand(50, 70), ramp[:50, None].expand(50, 70),
                         ramp[None, :].expand(50, 70).flip(1)])  # fmt: skip
    expected = reference([image.permute(1, 2, 0).numpy()], return_tensors="pt")
    pixel_values, grid_thw = qwen_vl_preprocess(image[None], cfg)
    assert grid_thw.tolist() == expected["image_grid_thw"].tolist() == [[1, 6, 8]]
    assert (pixel_values - expected["pixel_values"]).abs().max() < 0.05  # ~1 uint8 level


def test_siglip_preprocess_resizes_and_normalizes():
    images = torch.zeros(2, 3, 20, 30, dtype=torch.uint8)
    images[1] = 255
    out = siglip_preprocess(images, SiglipImageConfig(image_size=32))
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out[0], torch.tensor(-1.0)) and torch.allclose(out[1], torch.tensor(1.0))


def test_processor_configs_validate():
    with pytest.raises(ValueError, match="max_pixels"):
        QwenVLImageConfig(min_pixels=100, max_pixels=10)
    with pytest.raises(ValueError, match="image_std"):
        SiglipImageConfig(image_std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        qwen_vl_patchify(torch.zeros(1, 3, 20, 20), QwenVLImageConfig(patch_size=8))


def test_model_dir_must_hold_a_config(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model_dir(tmp_path, QWEN3VL_HUB_ID)
