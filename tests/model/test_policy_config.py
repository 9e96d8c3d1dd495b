"""PolicyConfig validation and the named sizes."""

import pytest

from drifting_kedro.model import POLICY_SIZES, PolicyConfig, policy_config
from drifting_kedro.model.config import flash_attn_available


def test_sizes_have_the_documented_shapes() -> None:
    assert set(POLICY_SIZES) == {"tiny", "B", "L"}
    base = policy_config("B")
    assert (base.hidden_size, base.depth, base.num_heads) == (768, 12, 12)
    large = policy_config("L", action_horizon=50)
    assert (large.hidden_size, large.depth, large.action_horizon) == (1024, 24, 50)


def test_multi_step_heads_take_the_action_as_input() -> None:
    assert policy_config("tiny", head="flow").noise_dim == 128
    with pytest.raises(ValueError, match="noise_dim must equal action_dim=128, got 32"):
        PolicyConfig(head="diffusion", noise_dim=32)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden_size": 130, "num_heads": 4}, "hidden_size=130 is not divisible"),
        ({"hidden_size": 96, "num_heads": 32}, "must be even"),
        ({"depth": 0}, "policy.depth must be a positive integer, got 0"),
        ({"dropout": 1.0}, "dropout must be in \\[0, 1\\), got 1.0"),
        ({"cfg_alpha_max": 0.5}, "cfg_alpha_max must be >= 1, got 0.5"),
        ({"head": "gan"}, "policy.head='gan'"),
        ({"attention_backend": "xformers"}, "attention_backend='xformers'"),
    ],
)
def test_invalid_fields_are_named(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**fields)


@pytest.mark.skipif(flash_attn_available(), reason="flash-attn is usable on this machine")
def test_flash_without_cuda_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="install the `flash` extra .* or set attention_backend"):
        PolicyConfig(attention_backend="flash")


def test_unknown_size_or_field() -> None:
    with pytest.raises(ValueError, match="policy size 'XL' is unknown"):
        policy_config("XL")
    with pytest.raises(ValueError, match="unknown policy fields \\['hiden_size'\\]"):
        policy_config("tiny", hiden_size=64)
