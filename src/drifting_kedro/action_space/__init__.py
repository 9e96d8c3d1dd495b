"""The 128-D unified action/state space, and the registry of datasets that map into it.

- `regions`: the space itself (regions A..F, named slots, embodiments);
- `registry`: each dataset's native layout, embodiment, cameras and fps (rows in `registry.yml`);
- `mapping`: native vectors in and out of the space, by dataset name.

Each imports only the ones before it; this package exports the names callers use.
"""

from drifting_kedro.action_space.mapping import (
    action_mask,
    embodiment_id,
    from_unified,
    normalize_quaternions,
    state_from_unified,
    state_mask,
    state_to_unified,
    to_unified,
)
from drifting_kedro.action_space.regions import (
    EMBODIMENT_ACTION_DIMS,
    QUAT_DIMS,
    REGION_A,
    REGION_B,
    REGION_C,
    REGION_D,
    REGION_E,
    REGION_F,
    REGION_PAD,
    REGIONS,
    UNIFIED_DIM,
    Embodiment,
    unified_dims,
)
from drifting_kedro.action_space.registry import (
    REGISTRY,
    SOURCE_KINDS,
    DatasetSpec,
    UnknownDatasetError,
    get_spec,
    known_dataset_names,
)

__all__ = [
    "EMBODIMENT_ACTION_DIMS",
    "QUAT_DIMS",
    "REGION_A",
    "REGION_B",
    "REGION_C",
    "REGION_D",
    "REGION_E",
    "REGION_F",
    "REGION_PAD",
    "REGIONS",
    "REGISTRY",
    "SOURCE_KINDS",
    "UNIFIED_DIM",
    "DatasetSpec",
    "Embodiment",
    "UnknownDatasetError",
    "action_mask",
    "embodiment_id",
    "from_unified",
    "get_spec",
    "known_dataset_names",
    "normalize_quaternions",
    "state_from_unified",
    "state_mask",
    "state_to_unified",
    "to_unified",
    "unified_dims",
]
