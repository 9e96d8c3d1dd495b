import subprocess
import sys

import pytest
import torch

from drifting_kedro.features.backbone import (
    BackboneOutput,
    available_backbones,
    build_backbone,
    check_encode_inputs,
    stable_hash,
)


def test_unknown_backbone_lists_the_names():
    with pytest.raises(ValueError, match="unknown backbone 'clip'") as err:
        build_backbone("clip")
    for name in ("small-real", "qwen3vl", "qwen3vl-tiny-random", "paligemma2-tiny-random"):
        assert name in str(err.value)


def test_registered_factory_receives_device_and_options(toy_backbone):
    assert toy_backbone in available_backbones()
    backbone = build_backbone(toy_backbone, device="cpu", scale=2.0)
    assert backbone.scale == 2.0
    assert backbone.config_hash() != build_backbone(toy_backbone).config_hash()


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_backbone_output_checks_shapes():
    with pytest.raises(ValueError, match="pooled"):
        BackboneOutput(
            torch.zeros(2, 3, 4),
            torch.ones(2, 3, dtype=torch.bool),
            torch.zeros(2, 5),
            torch.zeros(2, 3, dtype=torch.long),
        )


def test_encode_inputs_are_checked():
    with pytest.raises(ValueError, match="uint8"):
        check_encode_inputs("x", torch.zeros(1, 1, 3, 8, 8), ["a"])
    with pytest.raises(ValueError, match="one instruction per sample"):
        check_encode_inputs("x", torch.zeros(2, 1, 3, 8, 8, dtype=torch.uint8), ["a"])


def test_small_real_does_not_import_transformers():
    code = (
        "import sys; from drifting_kedro.features import build_backbone; "
        "build_backbone('small-real'); assert 'transformers' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
