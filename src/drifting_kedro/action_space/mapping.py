"""Native vectors in and out of the 128-D space, by dataset name.

The mapping is a pure scatter/gather into the slots the registry gives each dataset, and
therefore invertible bit for bit.
"""

from typing import TypeVar

import numpy as np
import torch

from drifting_kedro.action_space.regions import QUAT_DIMS, UNIFIED_DIM
from drifting_kedro.action_space.registry import get_spec

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


# ---------------------------------------------------------------------------------------------
# Ids and masks
# ---------------------------------------------------------------------------------------------


def embodiment_id(dataset: str) -> int:
    return int(get_spec(dataset).embodiment)


def _mask(indices: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(UNIFIED_DIM, dtype=bool)
    mask[list(indices)] = True
    return mask


def action_mask(dataset: str) -> np.ndarray:
    """[128] bool: True on the dims this dataset's actions occupy."""
    return _mask(get_spec(dataset).action_indices)


def state_mask(dataset: str) -> np.ndarray:
    """[128] bool: True on the dims this dataset's states occupy."""
    return _mask(get_spec(dataset).state_indices)


# ---------------------------------------------------------------------------------------------
# Native <-> unified
# ---------------------------------------------------------------------------------------------


def _scatter(native: np.ndarray, indices: tuple[int, ...], dataset: str, kind: str) -> np.ndarray:
    native = np.asarray(native)
    if native.ndim == 0 or native.shape[-1] != len(indices):
        got = native.shape[-1] if native.ndim else "a scalar"
        raise ValueError(
            f"dataset {dataset!r}: expected native {kind} width {len(indices)}, got {got} "
            f"(shape {native.shape})"
        )
    dtype = native.dtype if np.issubdtype(native.dtype, np.floating) else np.float32
    unified = np.zeros((*native.shape[:-1], UNIFIED_DIM), dtype=dtype)  # [..., 128]
    unified[..., list(indices)] = native
    return unified


def _gather(unified: np.ndarray, indices: tuple[int, ...], dataset: str, kind: str) -> np.ndarray:
    unified = np.asarray(unified)
    if unified.ndim == 0 or unified.shape[-1] != UNIFIED_DIM:
        raise ValueError(
            f"dataset {dataset!r}: expected unified {kind} width {UNIFIED_DIM}, "
            f"got shape {unified.shape}"
        )
    return unified[..., list(indices)]  # [..., A]


def to_unified(native: np.ndarray, dataset: str) -> np.ndarray:
    """[..., A] native actions -> [..., 128], zeros outside the dataset's dims."""
    return _scatter(native, get_spec(dataset).action_indices, dataset, "action")


def from_unified(unified: np.ndarray, dataset: str) -> np.ndarray:
    """[..., 128] -> [..., A] native actions; exact inverse of to_unified."""
    return _gather(unified, get_spec(dataset).action_indices, dataset, "action")


def state_to_unified(native: np.ndarray, dataset: str) -> np.ndarray:
    """[..., S] native states -> [..., 128]."""
    return _scatter(native, get_spec(dataset).state_indices, dataset, "state")


def state_from_unified(unified: np.ndarray, dataset: str) -> np.ndarray:
    """[..., 128] -> [..., S] native states; exact inverse of state_to_unified."""
    return _gather(unified, get_spec(dataset).state_indices, dataset, "state")


def normalize_quaternions(unified: ArrayT, dataset: str) -> ArrayT:
    """Unit-normalize dims 3:7 (native units) where the dataset has a quaternion there.

    Used on generator output, whose quaternion is only approximately unit. Returns a new
    array/tensor; datasets without an active quaternion come back unchanged.
    """
    if not get_spec(dataset).quat_active:
        return unified
    eps = 1e-12
    if isinstance(unified, torch.Tensor):
        quat = unified[..., QUAT_DIMS]  # [..., 4]
        norm = quat.norm(dim=-1, keepdim=True).clamp_min(eps)
        return torch.cat([unified[..., :3], quat / norm, unified[..., 7:]], dim=-1)
    out = np.array(unified, copy=True)
    quat = out[..., QUAT_DIMS]  # [..., 4]
    out[..., QUAT_DIMS] = quat / np.maximum(np.linalg.norm(quat, axis=-1, keepdims=True), eps)
    return out
