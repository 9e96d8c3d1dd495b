"""The 128-D unified space itself: its regions, named slots and embodiments.

Every embodiment writes its native action into fixed, non-overlapping slots of one 128-D vector,
so a single generator serves them all. This module knows only the space; which slots a dataset
uses is the registry's (`registry.py`), and the mapping in and out is `mapping.py`.
"""

from collections.abc import Sequence
from enum import IntEnum

UNIFIED_DIM = 128

# ---------------------------------------------------------------------------------------------
# Regions and embodiments
# ---------------------------------------------------------------------------------------------

REGION_A = slice(0, 8)  # absolute EEF: x y z qx qy qz qw grip
REGION_B = slice(8, 16)  # single-arm joints j0..j6 + grip
REGION_C = slice(16, 32)  # bimanual: L j0..j6, LG, R j0..j6, RG
REGION_D = slice(32, 48)  # dex fingers f0..f15
REGION_E = slice(48, 56)  # delta EEF: dxyz, drot, dG, dbase
# A mobile bimanual robot's base vx vy wz + torso t0..t3 (dim 63 spare): behavior1k's R1Pro acts
# with 23 values, more than the 16 dims of region C hold invertibly.
REGION_F = slice(56, 64)
REGION_PAD = slice(64, 128)  # always zeros
QUAT_DIMS = slice(3, 7)  # region A quaternion, x y z w

# Every dim of the space, by region name: the regions tile 0..127 without overlap.
REGIONS: dict[str, slice] = {
    "A": REGION_A,
    "B": REGION_B,
    "C": REGION_C,
    "D": REGION_D,
    "E": REGION_E,
    "F": REGION_F,
    "pad": REGION_PAD,
}

# Named slots that the registry's layouts place values into.
A_X, A_Y, A_Z, A_G = 0, 1, 2, 7
B_GRIP = 15
C_LEFT_GRIP, C_RIGHT_GRIP = 23, 31
E_GRIP, E_BASE = 54, 55
F_BASE, F_TORSO = slice(56, 59), slice(59, 63)


class Embodiment(IntEnum):
    GRIPPER_EEF = 0
    GRIPPER_JOINT = 1
    BIMANUAL = 2
    DEX_HAND = 3
    GRIPPER_DELTA_EEF = 4


def unified_dims(*parts: slice | int | Sequence[int]) -> tuple[int, ...]:
    """Unified dim indices of slices, single dims and sequences, in the order given."""
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
    Embodiment.GRIPPER_EEF: frozenset(unified_dims(REGION_A)),
    Embodiment.GRIPPER_JOINT: frozenset(unified_dims(REGION_B)),
    Embodiment.BIMANUAL: frozenset(unified_dims(REGION_C, REGION_F)),
    Embodiment.DEX_HAND: frozenset(unified_dims(slice(0, 7), REGION_D)),
    Embodiment.GRIPPER_DELTA_EEF: frozenset(unified_dims(REGION_E)),
}
