"""The DiT action generator (one-step drifting policy) and its multi-step comparison heads."""

from drifting_kedro.model.baseline import DiffusionHead, FlowMatchingHead, make_head
from drifting_kedro.model.config import POLICY_SIZES, PolicyConfig, policy_config
from drifting_kedro.model.dit import COND_KEYS, LANGUAGE_TOKEN, DriftingPolicy, build_policy
from drifting_kedro.model.sampling import check_sampling_steps, sample_chunks

__all__ = [
    "COND_KEYS",
    "LANGUAGE_TOKEN",
    "POLICY_SIZES",
    "DiffusionHead",
    "DriftingPolicy",
    "FlowMatchingHead",
    "PolicyConfig",
    "build_policy",
    "check_sampling_steps",
    "make_head",
    "policy_config",
    "sample_chunks",
]
