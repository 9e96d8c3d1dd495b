"""Policy configuration: one dataclass, validated on construction, plus the named sizes."""

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

HEADS = ("drifting", "diffusion", "flow")
ATTENTION_BACKENDS = ("sdpa", "flash")


@dataclass
class PolicyConfig:
    """Shape of the DiT action generator; every module of `dit.py` takes this object."""

    action_horizon: int = 16  # T: actions per chunk (16 tiny, 50 for ALOHA)
    action_patch: int = 1  # consecutive actions per token (like DiT's patch size); T % it == 0
    action_dim: int = 128  # the unified action space
    noise_dim: int = 32  # d_noise per action token; must equal action_dim for diffusion/flow
    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 8 / 3  # SwiGLU width = mlp_ratio * hidden (8/3 keeps a 4x GELU's params)
    vlm_hidden_size: int = 2048  # width of the VLM tokens and pooled vector (Qwen3-VL-2B)
    max_vlm_tokens: int = 4096  # longest VLM token sequence the model accepts
    num_cameras: int = 4  # learned camera embeddings; language tokens have their own
    num_frames: int = 4  # learned embeddings of the observation frame for multi-frame inputs
    num_embodiments: int = 5
    state_dim: int = 128  # unified normalized proprio state
    cfg_alpha_max: float = 4.0  # upper end of the guidance scale alpha the model is fed
    dropout: float = 0.0
    attention_backend: str = "sdpa"  # sdpa | flash (CUDA + the `flash` extra only)
    head: str = "drifting"  # drifting (1 step) | diffusion | flow (multi-step baselines)

    def __post_init__(self) -> None:
        positive = (
            "action_horizon",
            "action_patch",
            "action_dim",
            "noise_dim",
            "hidden_size",
            "depth",
            "num_heads",
            "vlm_hidden_size",
            "max_vlm_tokens",
            "num_cameras",
            "num_frames",
            "num_embodiments",
            "state_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"policy.{name} must be a positive integer, got {value!r}")
        if self.action_horizon % self.action_patch:
            raise ValueError(
                f"policy.action_horizon={self.action_horizon} is not divisible by "
                f"policy.action_patch={self.action_patch}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"policy.hidden_size={self.hidden_size} is not divisible by "
                f"policy.num_heads={self.num_heads}"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"policy head size hidden_size/num_heads={self.hidden_size // self.num_heads} "
                "must be even for rotary position embeddings"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"policy.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.cfg_alpha_max < 1:
            raise ValueError(f"policy.cfg_alpha_max must be >= 1, got {self.cfg_alpha_max}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"policy.dropout must be in [0, 1), got {self.dropout}")
        if self.head not in HEADS:
            raise ValueError(f"policy.head={self.head!r} is not one of {HEADS}")
        if self.head != "drifting" and self.noise_dim != self.action_dim:
            raise ValueError(
                f"policy.head={self.head!r} feeds the noisy action itself to the network, so "
                f"noise_dim must equal action_dim={self.action_dim}, got {self.noise_dim}"
            )
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"policy.attention_backend={self.attention_backend!r} is not one of "
                f"{ATTENTION_BACKENDS}"
            )
        if self.attention_backend == "flash" and not flash_attn_available():
            raise ValueError(
                "policy.attention_backend='flash' needs a CUDA device and the flash-attn "
                "package: install the `flash` extra (pip install -e '.[flash]') on a CUDA "
                "machine, or set attention_backend='sdpa'"
            )

    @property
    def num_action_tokens(self) -> int:
        """Tokens the generator runs on: one per `action_patch` consecutive actions."""
        return self.action_horizon // self.action_patch

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden_size(self) -> int:
        """SwiGLU width, rounded up to a multiple of 8 for friendly matmul shapes."""
        return -(-int(self.mlp_ratio * self.hidden_size) // 8) * 8


def flash_attn_available() -> bool:
    """flash-attn runs only on CUDA; on a CPU-only machine SDPA is the one backend."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


#################################################################################
#                                 Policy Sizes                                  #
#################################################################################


def _sized(defaults: dict, overrides: dict) -> PolicyConfig:
    """Defaults of a size plus overrides; the multi-step heads get noise_dim = action_dim."""
    unknown = sorted(set(overrides) - set(PolicyConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"unknown policy fields {unknown}; valid: {sorted(PolicyConfig.__dataclass_fields__)}"
        )
    fields = {**defaults, **overrides}
    if fields.get("head", "drifting") != "drifting" and "noise_dim" not in overrides:
        fields["noise_dim"] = fields.get("action_dim", PolicyConfig.action_dim)
    return PolicyConfig(**fields)


def policy_tiny(**overrides) -> PolicyConfig:
    """CPU default for the embedded simulated data and the tests (~1-3M parameters)."""
    return _sized({"hidden_size": 128, "depth": 4, "num_heads": 4, "noise_dim": 32}, overrides)


def policy_B(**overrides) -> PolicyConfig:
    """The seeds' default generator (768 x 12, ~148M parameters with 2048-wide VLM features).

    Cross-attention in every block costs 2.4M parameters a block, so the SwiGLU is 1536 wide
    rather than the seeds' 2048 to keep their ~146M budget (mlp_ratio=8/3 gives 2048 and 162M).
    """
    defaults = {"hidden_size": 768, "depth": 12, "num_heads": 12, "noise_dim": 64, "mlp_ratio": 2.0}
    return _sized(defaults, overrides)


def policy_L(**overrides) -> PolicyConfig:
    return _sized({"hidden_size": 1024, "depth": 24, "num_heads": 16, "noise_dim": 64}, overrides)


POLICY_SIZES: dict[str, Callable[..., PolicyConfig]] = {
    "tiny": policy_tiny,
    "B": policy_B,
    "L": policy_L,
}


def policy_config(size: str = "tiny", **overrides) -> PolicyConfig:
    """A named size with field overrides, e.g. `policy_config("tiny", action_horizon=50)`."""
    if size not in POLICY_SIZES:
        raise ValueError(f"policy size {size!r} is unknown; choose one of {sorted(POLICY_SIZES)}")
    return POLICY_SIZES[size](**overrides)
