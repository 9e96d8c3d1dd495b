"""The dataset registry: each dataset's native layout, embodiment, cameras and fps.

The rows are data (`registry.yml`, shipped with the package), so adding a dataset is adding a
row. A row names its layouts; the layouts (native dim names and the unified dim of each) are
defined once here because several datasets share each one and their indices must respect the
regions of `regions.py`. Every row is checked when the registry loads, and each
error names the file and the row: a bad row fails at import, before any stage runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from drifting_kedro.action_space.regions import (
    A_G,
    A_X,
    A_Y,
    A_Z,
    C_LEFT_GRIP,
    C_RIGHT_GRIP,
    E_BASE,
    E_GRIP,
    EMBODIMENT_ACTION_DIMS,
    F_BASE,
    F_TORSO,
    QUAT_DIMS,
    REGION_A,
    REGION_C,
    REGION_D,
    UNIFIED_DIM,
    Embodiment,
    unified_dims,
)

SourceKind = Literal["sim", "lerobot_v3", "rlbench", "dexgraspnet"]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
REGISTRY_PATH = Path(__file__).with_name("registry.yml")


class RegistryError(ValueError):
    """A registry row that cannot become a dataset spec."""


def _check_native_dims(
    owner: str, kind: str, names: tuple[str, ...], indices: tuple[int, ...]
) -> None:
    """One unified dim per native name, inside the 128 dims, none used twice."""
    if len(names) != len(indices):
        raise ValueError(f"{owner}: {len(names)} {kind} names but {len(indices)} unified indices")
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: duplicate {kind} names {names}")
    bad = [i for i in indices if not 0 <= i < UNIFIED_DIM]
    if bad:
        raise ValueError(f"{owner}: {kind} indices {bad} outside 0..{UNIFIED_DIM - 1}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"{owner}: duplicate {kind} indices {indices}")


# ---------------------------------------------------------------------------------------------
# Dataset spec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline needs to know about one dataset's native layout.

    `DatasetSpec(**dataclasses.asdict(spec))` rebuilds a spec, also after a JSON round trip
    (lists for tuples, an int for the embodiment), so checkpoints can carry their rows.
    """

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
        if self.source not in SOURCE_KINDS:
            raise ValueError(f"{self.name}: source {self.source!r} not in {SOURCE_KINDS}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int | float) or self.fps <= 0:
            raise ValueError(f"{self.name}: fps must be a number > 0, got {self.fps!r}")
        try:
            embodiment = Embodiment(self.embodiment)
        except ValueError:
            raise ValueError(
                f"{self.name}: embodiment {self.embodiment!r} is not one of "
                f"{[int(e) for e in Embodiment]}"
            ) from None
        for field, value in (
            ("action_names", tuple(self.action_names)),
            ("action_indices", tuple(int(i) for i in self.action_indices)),
            ("state_names", tuple(self.state_names)),
            ("state_indices", tuple(int(i) for i in self.state_indices)),
            ("cameras", tuple(self.cameras)),
            ("embodiment", embodiment),
            ("fps", float(self.fps)),
        ):
            object.__setattr__(self, field, value)  # frozen: normalize rows read back from JSON
        _check_native_dims(self.name, "action", self.action_names, self.action_indices)
        _check_native_dims(self.name, "state", self.state_names, self.state_indices)
        outside = sorted(set(self.action_indices) - EMBODIMENT_ACTION_DIMS[self.embodiment])
        if outside:
            raise ValueError(
                f"{self.name}: action indices {outside} lie outside the regions of embodiment "
                f"{self.embodiment.name}"
            )
        if self.quat_active and not set(unified_dims(QUAT_DIMS)) <= set(self.action_indices):
            raise ValueError(f"{self.name}: quat_active needs action indices 3..6")


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Native dim names and the unified dim each lands in; rows name it for action or state."""

    name: str
    names: tuple[str, ...]
    indices: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_native_dims(f"layout {self.name!r}", "native", self.names, self.indices)

    @property
    def has_quaternion(self) -> bool:
        """Region A's dims 3:7 are a quaternion by definition of the space."""
        return set(unified_dims(QUAT_DIMS)) <= set(self.indices)


_EEF_QUAT = ("x", "y", "z", "qx", "qy", "qz", "qw")
_ALOHA_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
_DELTA7 = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("none", (), ()),  # no proprioception, e.g. a static grasp
        # RLBench gripper pose and open state (the action is the next frame's).
        Layout("eef_quat_grip", (*_EEF_QUAT, "gripper_open"), unified_dims(REGION_A)),
        # A Panda's measured gripper pose and finger opening (robosuite, ManiSkill), whose
        # action is the pose to go to (eef_quat_grip).
        Layout("eef_quat_opening", (*_EEF_QUAT, "gripper_opening"), unified_dims(REGION_A)),
        # DexGraspNet 2.0 wrist pose + LEAP hand joints j0..j15 in the release's npz key order.
        Layout(
            "wrist_quat_leap_hand",
            (*_EEF_QUAT, *(f"j{i}" for i in range(16))),
            unified_dims(slice(0, 7), REGION_D),
        ),
        # ALOHA: 6 joints per arm go to j0..j5 of each arm, grippers to the region's G slots.
        Layout(
            "aloha_bimanual",
            tuple(
                f"{side}_{joint}"
                for side in ("left", "right")
                for joint in (*_ALOHA_JOINTS, "gripper")
            ),
            unified_dims(slice(16, 22), C_LEFT_GRIP, slice(24, 30), C_RIGHT_GRIP),
        ),
        # Seven arm joint positions (the OXE ports name them generically, e.g. "motor_0").
        Layout("joints7", tuple(f"joint_{i}" for i in range(7)), unified_dims(slice(8, 15))),
        Layout("delta7", _DELTA7, unified_dims(slice(48, 54), E_GRIP)),
        Layout("delta7_base", (*_DELTA7, "base"), unified_dims(slice(48, 54), E_GRIP, E_BASE)),
        # nyu_franka: [Lj0..Lj7, Rj0..Rj6], the 8th left value being the left gripper.
        Layout(
            "bimanual15",
            (
                *(f"left_joint_{i}" for i in range(7)),
                "left_gripper",
                *(f"right_joint_{i}" for i in range(7)),
            ),
            unified_dims(slice(16, 31)),
        ),
        # BEHAVIOR-1K R1Pro: base vx vy wz, torso 4 joints, two 7-joint arms with grippers.
        Layout(
            "r1pro_whole_body",
            (
                "base_vx",
                "base_vy",
                "base_wz",
                *(f"torso_{i}" for i in range(4)),
                *(f"left_arm_{i}" for i in range(7)),
                "left_gripper",
                *(f"right_arm_{i}" for i in range(7)),
                "right_gripper",
            ),
            unified_dims(F_BASE, F_TORSO, REGION_C),
        ),
        # Fetch: gripper displacement + gripper command; an absolute-target variant; its state.
        Layout("delta_xyz_grip", ("dx", "dy", "dz", "gripper"), (48, 49, 50, E_GRIP)),
        Layout(
            "target_xyz_grip", ("target_x", "target_y", "target_z", "gripper"), (A_X, A_Y, A_Z, A_G)
        ),
        Layout(
            "gripper_xyz_opening",
            ("grip_x", "grip_y", "grip_z", "gripper_opening"),
            (A_X, A_Y, A_Z, A_G),
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Loading the rows
# ---------------------------------------------------------------------------------------------

_REQUIRED_FIELDS = ("name", "source", "source_id", "action", "embodiment", "cameras", "fps")
_OPTIONAL_FIELDS = ("state", "instruction", "tasks")
_TEXT_FIELDS = ("name", "source", "source_id", "action", "state", "embodiment", "instruction")
_TEMPLATED_FIELDS = ("name", "source_id", "instruction")  # formatted with {task} per task


def _layout(row: dict[str, Any], field: str, layouts: dict[str, Layout]) -> Layout:
    name = row.get(field, row["action"])
    if name not in layouts:
        raise ValueError(f"{field} layout {name!r} is not one of {sorted(layouts)}")
    return layouts[name]


def _embodiment(value: Any) -> Embodiment:
    names = [e.name.lower() for e in Embodiment]
    if value not in names:
        raise ValueError(f"embodiment {value!r} is not one of {names}")
    return Embodiment[value.upper()]


def _check_row(row: Any) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"a row is a mapping of fields, got {type(row).__name__} {row!r}")
    missing = [f for f in _REQUIRED_FIELDS if row.get(f) is None]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    unknown = sorted(set(row) - {*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS})
    if unknown:
        raise ValueError(
            f"unknown field(s) {unknown}; a row has {[*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS]}"
        )
    not_text = [f for f in _TEXT_FIELDS if f in row and not isinstance(row[f], str)]
    if not_text:
        raise ValueError(f"field(s) {not_text} must be text, got {[row[f] for f in not_text]}")
    if not isinstance(row["cameras"], list) or not all(isinstance(c, str) for c in row["cameras"]):
        raise ValueError(f"cameras must be a list of camera keys, got {row['cameras']!r}")
    tasks = row.get("tasks")
    if tasks is not None and (isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1):
        raise ValueError(f"tasks must be a count >= 1, got {tasks!r}")
    if tasks is None and "{" in row["name"]:
        raise ValueError("a name with a {task} placeholder needs `tasks: <count>`")
    if tasks is not None and "{task" not in row["name"]:
        raise ValueError("a row with `tasks` needs a {task} placeholder in its name")


def _expand(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A templated row (`tasks: N`) as N rows with {task} = 0..N-1 filled in."""
    if row.get("tasks") is None:
        return [row]
    try:
        return [
            {
                **row,
                **{f: row[f].format(task=task) for f in _TEMPLATED_FIELDS if f in row},
            }
            for task in range(row["tasks"])
        ]
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"bad placeholder ({err!r}); use {{task}} or e.g. {{task:04d}}") from None


def _specs_of_row(row: Any, layouts: dict[str, Layout]) -> list[DatasetSpec]:
    _check_row(row)
    action, state = _layout(row, "action", layouts), _layout(row, "state", layouts)
    embodiment = _embodiment(row["embodiment"])
    return [
        DatasetSpec(
            name=expanded["name"],
            source=expanded["source"],
            source_id=expanded["source_id"],
            action_names=action.names,
            action_indices=action.indices,
            state_names=state.names,
            state_indices=state.indices,
            embodiment=embodiment,
            cameras=tuple(expanded["cameras"]),
            fps=expanded["fps"],
            quat_active=action.has_quaternion,
            instruction=expanded.get("instruction"),
        )
        for expanded in _expand(row)
    ]


def load_registry(
    path: str | Path = REGISTRY_PATH, layouts: dict[str, Layout] | None = None
) -> dict[str, DatasetSpec]:
    """Every dataset of the registry file, by name, in row order.

    Raises:
        RegistryError: naming the file and the row (its position and name) when a row has a
            missing or unknown field, an unknown layout, embodiment or source kind, a
            duplicated name, or indices outside its embodiment's regions.
    """
    layouts = LAYOUTS if layouts is None else layouts
    try:
        rows = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RegistryError(f"cannot read the dataset registry {path}: {err}") from None
    if not isinstance(rows, list) or not rows:
        raise RegistryError(f"{path}: expected a list of dataset rows, got {rows!r:.80}")
    registry: dict[str, DatasetSpec] = {}
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        name = row.get("name") if isinstance(row, dict) else None
        where = f"{path}: row {number}" + ("" if name is None else f" ({name})")
        try:
            specs = _specs_of_row(row, layouts)
        except ValueError as err:  # a spec's own checks start with the name `where` gives
            raise RegistryError(f"{where}: {str(err).removeprefix(f'{name}: ')}") from None
        for spec in specs:
            if spec.name in registry:
                raise RegistryError(
                    f"{where}: duplicate dataset name {spec.name!r}, first in row "
                    f"{first_row[spec.name]}"
                )
            registry[spec.name] = spec
            first_row[spec.name] = number
    return registry


REGISTRY: dict[str, DatasetSpec] = load_registry()


# ---------------------------------------------------------------------------------------------
# Lookup
# ---------------------------------------------------------------------------------------------


class UnknownDatasetError(KeyError, ValueError):
    """A dataset name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def known_dataset_names() -> str:
    """The registry's names, with numbered runs like behavior1k_t0000..t0049 collapsed."""
    runs: dict[str, list[str]] = {}
    for name in REGISTRY:
        match = re.fullmatch(r"(.*\D)\d+", name)
        runs.setdefault(match.group(1) if match else name, []).append(name)
    return ", ".join(
        names[0] if len(names) == 1 else f"{names[0]}..{names[-1].rsplit('_', 1)[-1]}"
        for names in runs.values()
    )


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {known_dataset_names()}"
        ) from None
