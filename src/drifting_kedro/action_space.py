"""The dataset registry and the 128-D unified action/state space.

Every embodiment writes its native action into fixed, non-overlapping slots of one 128-D vector,
so a single generator serves them all; the mapping is a pure scatter/gather and therefore
invertible bit for bit. The registry is the one place that knows each dataset's native layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, TypeVar

import numpy as np
import torch

UNIFIED_DIM = 128

# ---------------------------------------------------------------------------------------------
# Regions and embodiments
# ---------------------------------------------------------------------------------------------

REGION_A = slice(0, 8)  # absolute EEF: x y z qx qy qz qw grip
REGION_B = slice(8, 16)  # single-arm joints j0..j6 + grip
REGION_C = slice(16, 32)  # bimanual: L j0..j6, LG, R j0..j6, RG
REGION_D = slice(32, 48)  # dex fingers f0..f15
REGION_E = slice(48, 56)  # delta EEF: dxyz, drot, dG, dbase
REGION_PAD = slice(56, 128)  # zeros, except WHOLE_BODY below for behavior1k
QUAT_DIMS = slice(3, 7)  # region A quaternion, x y z w

# behavior1k's R1Pro action is 23-D: base (3) + torso (4) + two 7-joint arms + two grippers.
# Squeezing those 23 values into the 16 dims of region C could not be inverted, so the arms
# and grippers go to C and base + torso take the first 7 pad dims.
WHOLE_BODY = slice(56, 63)

# Named slots that the registry places values into.
A_X, A_Y, A_Z, A_G = 0, 1, 2, 7
B_GRIP = 15
C_LEFT_GRIP, C_RIGHT_GRIP = 23, 31
E_GRIP, E_BASE = 54, 55


class Embodiment(IntEnum):
    GRIPPER_EEF = 0
    GRIPPER_JOINT = 1
    BIMANUAL = 2
    DEX_HAND = 3
    GRIPPER_DELTA_EEF = 4


def _dims(*parts: slice | int | Sequence[int]) -> tuple[int, ...]:
    out: list[int] = []
    for part in parts:
        if isinstance(part, slice):
            out.extend(range(part.start, part.stop))
        elif isinstance(part, int):
            out.append(part)
        else:
            out.extend(part)
    return tuple(out)


# Unified dims an embodiment's *actions* may occupy (states may sit anywhere in 0..127).
EMBODIMENT_ACTION_DIMS: dict[Embodiment, frozenset[int]] = {
    Embodiment.GRIPPER_EEF: frozenset(_dims(REGION_A)),
    Embodiment.GRIPPER_JOINT: frozenset(_dims(REGION_B)),
    Embodiment.BIMANUAL: frozenset(_dims(REGION_C, WHOLE_BODY)),
    Embodiment.DEX_HAND: frozenset(_dims(slice(0, 7), REGION_D)),
    Embodiment.GRIPPER_DELTA_EEF: frozenset(_dims(REGION_E)),
}

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
SourceKind = Literal["lerobot_v3", "rlbench", "dexgraspnet", "sim"]
_SOURCE_KINDS = ("lerobot_v3", "rlbench", "dexgraspnet", "sim")


# ---------------------------------------------------------------------------------------------
# Dataset spec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline needs to know about one dataset's native layout."""

    name: str
    source: SourceKind
    source_id: str  # hub repo id, or the simulator's env id
    action_names: tuple[str, ...]
    action_indices: tuple[int, ...]  # unified dim of each native action dim
    state_names: tuple[str, ...]
    state_indices: tuple[int, ...]  # unified dim of each native state dim
    embodiment: Embodiment
    cameras: tuple[str, ...]  # RGB camera keys
    fps: float
    quat_active: bool = False  # region A dims 3:7 hold a quaternion
    instruction: str | None = None  # fixed instruction of the simulated datasets

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    def __post_init__(self) -> None:
        if self.source not in _SOURCE_KINDS:
            raise ValueError(f"{self.name}: source {self.source!r} not in {_SOURCE_KINDS}")
        if self.fps <= 0:
            raise ValueError(f"{self.name}: fps must be > 0, got {self.fps}")
        for kind, names, indices in (
            ("action", self.action_names, self.action_indices),
            ("state", self.state_names, self.state_indices),
        ):
            if len(names) != len(indices):
                raise ValueError(
                    f"{self.name}: {len(names)} {kind} names but {len(indices)} unified indices"
                )
            if len(set(names)) != len(names):
                raise ValueError(f"{self.name}: duplicate {kind} names {names}")
            bad = [i for i in indices if not 0 <= i < UNIFIED_DIM]
            if bad:
                raise ValueError(f"{self.name}: {kind} indices {bad} outside 0..{UNIFIED_DIM - 1}")
            if len(set(indices)) != len(indices):
                raise ValueError(f"{self.name}: duplicate {kind} indices {indices}")
        outside = sorted(set(self.action_indices) - EMBODIMENT_ACTION_DIMS[self.embodiment])
        if outside:
            raise ValueError(
                f"{self.name}: action indices {outside} lie outside the regions of embodiment "
                f"{self.embodiment.name}"
            )
        quat = set(_dims(QUAT_DIMS))
        if self.quat_active and not quat <= set(self.action_indices):
            raise ValueError(f"{self.name}: quat_active needs action indices 3..6")


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

_EEF_QUAT = ("x", "y", "z", "qx", "qy", "qz", "qw")
_ALOHA_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
_ALOHA_NAMES = tuple(
    f"{side}_{joint}" for side in ("left", "right") for joint in (*_ALOHA_JOINTS, "gripper")
)
# 6 joints per arm go to j0..j5 of each arm, grippers to the region's G slots.
_ALOHA_DIMS = _dims(slice(16, 22), C_LEFT_GRIP, slice(24, 30), C_RIGHT_GRIP)
_JOINTS7 = tuple(f"joint_{i}" for i in range(7))
_DELTA7 = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
_DELTA7_DIMS = _dims(slice(48, 54), E_GRIP)
_FETCH_STATE = ("grip_x", "grip_y", "grip_z", "gripper_opening")
_FETCH_STATE_DIMS = (A_X, A_Y, A_Z, A_G)

_ALOHA_INSTRUCTION = "Pick up the cube with the right arm and transfer it to the left arm."
_PICK_INSTRUCTION = "Pick up the block and place it at the red target."


def _mirror_state(spec: dict) -> dict:
    # The seed table gives only action widths for the LeRobot OXE ports; their state mirrors
    # the action layout until a dataset's meta/info.json says otherwise.
    return {**spec, "state_names": spec["action_names"], "state_indices": spec["action_indices"]}


def _build_registry() -> dict[str, DatasetSpec]:
    specs: list[DatasetSpec] = [
        DatasetSpec(
            name="rlbench",
            source="rlbench",
            source_id="hqfang/rlbench-18-tasks",
            action_names=(*_EEF_QUAT, "gripper_open"),  # next frame's gripper_pose + open
            action_indices=_dims(REGION_A),
            state_names=(*_EEF_QUAT, "gripper_open"),
            state_indices=_dims(REGION_A),
            embodiment=Embodiment.GRIPPER_EEF,
            cameras=(
                "front_rgb",
                "left_shoulder_rgb",
                "right_shoulder_rgb",
                "overhead_rgb",
                "wrist_rgb",
            ),
            fps=20.0,  # RLBench/PyRep simulation step of 0.05 s
            quat_active=True,
        ),
        DatasetSpec(
            name="dexgraspnet",
            source="dexgraspnet",
            source_id="lhrlhr/DexGraspNet2.0",
            # LEAP hand joints j0..j15 in the release's npz key order.
            action_names=(*_EEF_QUAT, *(f"j{i}" for i in range(16))),
            action_indices=_dims(slice(0, 7), REGION_D),
            state_names=(),  # a static grasp has no proprioception before it
            state_indices=(),
            embodiment=Embodiment.DEX_HAND,
            cameras=(),  # the release ships rendered depth only, no RGB
            fps=1.0,  # one-frame episodes; nominal
            quat_active=True,
        ),
        DatasetSpec(
            name="aloha",
            source="lerobot_v3",
            source_id="lerobot/aloha_sim_transfer_cube_human_image",
            action_names=_ALOHA_NAMES,
            action_indices=_ALOHA_DIMS,
            state_names=_ALOHA_NAMES,
            state_indices=_ALOHA_DIMS,
            embodiment=Embodiment.BIMANUAL,
            cameras=("observation.images.top",),
            fps=50.0,
        ),
        # Native widths; names are the real datasets' as best known (the OXE ports
        # name their vectors generically, e.g. "motor_0").
        DatasetSpec(
            **_mirror_state(
                dict(
                    name="droid",
                    source="lerobot_v3",
                    source_id="lerobot/droid_1.0.1",
                    action_names=_JOINTS7,  # Franka joint positions
                    action_indices=_dims(slice(8, 15)),
                    embodiment=Embodiment.GRIPPER_JOINT,
                    cameras=(
                        "observation.images.exterior_1_left",
                        "observation.images.exterior_2_left",
                        "observation.images.wrist_left",
                    ),
                    fps=15.0,
                )
            )
        ),
        DatasetSpec(
            **_mirror_state(
                dict(
                    name="bc_z",
                    source="lerobot_v3",
                    source_id="lerobot/berkeley_autolab_ur5",
                    action_names=_JOINTS7,
                    action_indices=_dims(slice(8, 15)),
                    embodiment=Embodiment.GRIPPER_JOINT,
                    cameras=("observation.images.image", "observation.images.hand_image"),
                    fps=5.0,
                )
            )
        ),
        DatasetSpec(
            **_mirror_state(
                dict(
                    name="taco_play",
                    source="lerobot_v3",
                    source_id="lerobot/taco_play",
                    action_names=_JOINTS7,
                    action_indices=_dims(slice(8, 15)),
                    embodiment=Embodiment.GRIPPER_JOINT,
                    cameras=("observation.images.rgb_static", "observation.images.rgb_gripper"),
                    fps=15.0,
                )
            )
        ),
        DatasetSpec(
            **_mirror_state(
                dict(
                    name="utaustin_mutex",
                    source="lerobot_v3",
                    source_id="lerobot/utaustin_mutex",
                    action_names=_DELTA7,
                    action_indices=_DELTA7_DIMS,
                    embodiment=Embodiment.GRIPPER_DELTA_EEF,
                    cameras=("observation.images.image", "observation.images.wrist_image"),
                    fps=20.0,
                )
            )
        ),
        DatasetSpec(
            **_mirror_state(
                dict(
                    name="cmu_stretch",
                    source="lerobot_v3",
                    source_id="lerobot/cmu_stretch",
                    action_names=(*_DELTA7, "base"),
                    action_indices=(*_DELTA7_DIMS, E_BASE),
                    embodiment=Embodiment.GRIPPER_DELTA_EEF,
                    cameras=("observation.images.image",),
                    fps=10.0,
                )
            )
        ),
        DatasetSpec(
            **_mirror_state(
                dict(
                    name="nyu_franka",
                    source="lerobot_v3",
                    source_id="lerobot/nyu_franka_play_dataset",
                    # Seed: [Lj0..Lj7, Rj0..Rj6]; the 8th left value is the left gripper.
                    action_names=(
                        *(f"left_joint_{i}" for i in range(7)),
                        "left_gripper",
                        *(f"right_joint_{i}" for i in range(7)),
                    ),
                    action_indices=_dims(slice(16, 31)),
                    embodiment=Embodiment.BIMANUAL,
                    cameras=(
                        "observation.images.image",
                        "observation.images.image_additional_view",
                    ),
                    fps=3.0,
                )
            )
        ),
        DatasetSpec(
            **_mirror_state(
                dict(
                    name="stanford_hydra",
                    source="lerobot_v3",
                    source_id="lerobot/stanford_hydra_dataset",
                    action_names=_DELTA7,
                    action_indices=_DELTA7_DIMS,
                    embodiment=Embodiment.GRIPPER_DELTA_EEF,
                    cameras=("observation.images.image", "observation.images.wrist_image"),
                    fps=10.0,
                )
            )
        ),
    ]
    # BEHAVIOR-1K R1Pro: base vx vy wz, torso 4 joints, left arm 7 + gripper, right arm 7 +
    # gripper (23).
    b1k_names = (
        "base_vx",
        "base_vy",
        "base_wz",
        *(f"torso_{i}" for i in range(4)),
        *(f"left_arm_{i}" for i in range(7)),
        "left_gripper",
        *(f"right_arm_{i}" for i in range(7)),
        "right_gripper",
    )
    b1k_dims = _dims(WHOLE_BODY, REGION_C)
    for task in range(50):
        specs.append(
            DatasetSpec(
                name=f"behavior1k_t{task:04d}",
                source="lerobot_v3",
                source_id=f"lerobot/behavior1k-task{task:04d}",
                action_names=b1k_names,
                action_indices=b1k_dims,
                state_names=b1k_names,
                state_indices=b1k_dims,
                embodiment=Embodiment.BIMANUAL,
                cameras=(
                    "observation.images.rgb.head",
                    "observation.images.rgb.left_wrist",
                    "observation.images.rgb.right_wrist",
                ),
                fps=30.0,
            )
        )
    # The simulated datasets of the embedded default (shared contract, names fixed).
    for name, env_id, instruction in (
        ("aloha_sim_transfer_cube", "gym_aloha/AlohaTransferCube-v0", _ALOHA_INSTRUCTION),
        ("aloha_sim_insertion", "gym_aloha/AlohaInsertion-v0", "Insert the peg into the socket."),
    ):
        specs.append(
            DatasetSpec(
                name=name,
                source="sim",
                source_id=env_id,
                action_names=_ALOHA_NAMES,
                action_indices=_ALOHA_DIMS,
                state_names=_ALOHA_NAMES,
                state_indices=_ALOHA_DIMS,
                embodiment=Embodiment.BIMANUAL,
                cameras=("observation.images.top",),
                fps=50.0,
                instruction=instruction,
            )
        )
    for name, env_id, instruction in (
        ("fetch_pick_and_place", "FetchPickAndPlace-v4", _PICK_INSTRUCTION),
        ("fetch_push", "FetchPush-v4", "Push the block to the red target."),
    ):
        specs.append(
            DatasetSpec(
                name=name,
                source="sim",
                source_id=env_id,
                action_names=("dx", "dy", "dz", "gripper"),
                action_indices=(48, 49, 50, E_GRIP),
                state_names=_FETCH_STATE,
                state_indices=_FETCH_STATE_DIMS,
                embodiment=Embodiment.GRIPPER_DELTA_EEF,
                cameras=("observation.images.front", "observation.images.side"),
                fps=25.0,
                instruction=instruction,
            )
        )
    specs.append(
        DatasetSpec(
            name="fetch_pick_and_place_abs",
            source="sim",
            source_id="FetchPickAndPlace-v4",
            action_names=("target_x", "target_y", "target_z", "gripper"),
            action_indices=(A_X, A_Y, A_Z, A_G),
            state_names=_FETCH_STATE,
            state_indices=_FETCH_STATE_DIMS,
            embodiment=Embodiment.GRIPPER_EEF,
            cameras=("observation.images.front", "observation.images.side"),
            fps=25.0,
            instruction=_PICK_INSTRUCTION,
        )
    )
    registry = {spec.name: spec for spec in specs}
    if len(registry) != len(specs):
        raise ValueError("duplicate dataset names in the registry")
    return registry


REGISTRY: dict[str, DatasetSpec] = _build_registry()  # validated by DatasetSpec.__post_init__


# ---------------------------------------------------------------------------------------------
# Lookup
# ---------------------------------------------------------------------------------------------


class UnknownDatasetError(KeyError, ValueError):
    """A dataset name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def known_dataset_names() -> str:
    """The registry's names, with runs like behavior1k_t0000..t0049 collapsed."""
    parts: list[str] = []
    b1k = sorted(n for n in REGISTRY if n.startswith("behavior1k_t"))
    for name in REGISTRY:
        if name.startswith("behavior1k_t"):
            if name == b1k[0]:
                parts.append(f"{b1k[0]}..{b1k[-1].removeprefix('behavior1k_')}")
            continue
        parts.append(name)
    return ", ".join(parts)


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {known_dataset_names()}"
        ) from None


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
