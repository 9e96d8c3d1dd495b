"""RLBench demonstrations in the PerAct layout (``hqfang/rlbench-18-tasks``) as Episodes.

Layout::

    <root>/<task>/all_variations/episodes/episode<N>/      (or .../variation<K>/episodes/...)
        low_dim_obs.pkl            pickled rlbench.demo.Demo of Observations
        variation_descriptions.pkl list[str]; the language is the first one
        variation_number.pkl       int
        front_rgb/0.png, 1.png ... one folder per camera, one PNG per observation

The pickles reference RLBench's own classes. Instead of importing RLBench (and running whatever
a pickle names), a restricted unpickler maps exactly those two classes to inert stand-ins and
refuses every other non-builtin global. Action at frame t is the gripper pose + open state of
frame t+1 (absolute EEF, region A); state is frame t's, so a demo of T observations gives T-1
frames.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from drifting_kedro.action_space import get_spec
from drifting_kedro.sources.base import Episode

logger = logging.getLogger(__name__)

DATASET = "rlbench"
CAMERAS = get_spec(DATASET).cameras


class Observation:
    """Stand-in for ``rlbench.backend.observation.Observation``: only holds attributes."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class Demo:
    """Stand-in for ``rlbench.demo.Demo``: a list of observations (``_observations``)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def observations(self) -> list[Observation]:
        return list(self.__dict__.get("_observations", []))


class RLBenchFormatError(ValueError):
    """A file that does not follow the PerAct RLBench layout."""


_STAND_INS = {
    ("rlbench.backend.observation", "Observation"): Observation,
    ("rlbench.demo", "Demo"): Demo,
}
# numpy's array/scalar reconstruction (both numpy 1 and 2 module paths) and plain containers.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _STAND_INS:
            return _STAND_INS[(module, name)]
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"{self._path}: refusing to load global {module}.{name}; only RLBench's Demo and "
            "Observation (mapped to stand-ins), numpy arrays and builtins are allowed"
        )


def load_pickle(path: str | Path) -> Any:
    """Unpickle an RLBench file without importing RLBench or running code it names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RLBench file not found: {path}")
    with path.open("rb") as f:
        return _RestrictedUnpickler(f, path).load()


def _observations(demo: Any, path: Path) -> list[Any]:
    if isinstance(demo, Demo):
        return demo.observations
    if isinstance(demo, list):
        return demo
    raise RLBenchFormatError(f"{path}: expected a Demo or a list of observations, got {demo!r}")


def _pose_and_open(obs: Any, path: Path, frame: int) -> np.ndarray:
    try:
        pose = np.asarray(obs.gripper_pose, dtype=np.float64).reshape(-1)
        gripper_open = float(obs.gripper_open)
    except (AttributeError, TypeError, ValueError) as err:
        raise RLBenchFormatError(
            f"{path} observation {frame}: needs gripper_pose [7] and gripper_open ({err})"
        ) from None
    if pose.shape != (7,):
        raise RLBenchFormatError(
            f"{path} observation {frame}: gripper_pose must have 7 values, got {pose.shape}"
        )
    return np.append(pose, gripper_open)  # [8] x y z qx qy qz qw open


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"RLBench frame missing: {path}")
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)  # [H, W, 3]


def read_episode(
    episode_dir: str | Path, episode_index: int, cameras: Sequence[str] | None = None
) -> Episode:
    """One ``episode<N>`` folder as an Episode (``cameras=None``: every camera folder present)."""
    episode_dir = Path(episode_dir)
    pkl = episode_dir / "low_dim_obs.pkl"
    observations = _observations(load_pickle(pkl), pkl)
    if len(observations) < 2:
        raise RLBenchFormatError(
            f"{pkl}: {len(observations)} observation(s); an action needs a next observation"
        )
    poses = np.stack([_pose_and_open(o, pkl, i) for i, o in enumerate(observations)])  # [T, 8]
    descriptions = load_pickle(episode_dir / "variation_descriptions.pkl")
    language = descriptions[0] if isinstance(descriptions, list) and descriptions else ""
    length = len(observations) - 1
    if cameras is None:
        cameras = [c for c in CAMERAS if (episode_dir / c).is_dir()]
    images = {}
    for camera in cameras:
        if not (episode_dir / camera).is_dir():
            raise FileNotFoundError(f"{episode_dir}: camera folder {camera!r} not found")
        images[camera] = np.stack(
            [_read_png(episode_dir / camera / f"{t}.png") for t in range(length)]
        )  # [T-1, H, W, 3]
    return Episode(
        dataset=DATASET,
        episode_index=episode_index,
        language=str(language),
        fps=get_spec(DATASET).fps,
        action=poses[1:].astype(np.float32),
        state=poses[:-1].astype(np.float32),
        images=images,
    )


def _numbered(parent: Path, prefix: str) -> list[Path]:
    pattern = re.compile(rf"{prefix}(\d+)$")
    found = [(int(m.group(1)), p) for p in parent.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def episode_dirs(root: str | Path, tasks: Sequence[str] | None = None) -> list[Path]:
    """Every ``episode<N>`` folder under root, ordered by task, variation, then N."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"RLBench root not found: {root}")
    task_dirs = [root / t for t in tasks] if tasks is not None else sorted(root.iterdir())
    out: list[Path] = []
    for task_dir in task_dirs:
        if not task_dir.is_dir():
            raise FileNotFoundError(f"RLBench task {task_dir.name!r} not found under {root}")
        groups = [task_dir / "all_variations", *_numbered(task_dir, "variation")]
        for group in groups:
            if (group / "episodes").is_dir():
                out.extend(_numbered(group / "episodes", "episode"))
    return out


def iter_episodes(
    root: str | Path,
    tasks: Sequence[str] | None = None,
    cameras: Sequence[str] | None = None,
    max_episodes: int | None = None,
) -> Iterator[Episode]:
    """Episodes numbered 0, 1, ... in ``episode_dirs`` order (unique across tasks)."""
    dirs = episode_dirs(root, tasks)
    if max_episodes is not None:
        dirs = dirs[:max_episodes]
    logger.info("reading %d RLBench episodes from %s", len(dirs), root)
    for index, episode_dir in enumerate(dirs):
        yield read_episode(episode_dir, index, cameras)
