"""DexGraspNet 2.0 (``lhrlhr/DexGraspNet2.0``) LEAP-hand grasps as one-frame Episodes.

Release layout (the scenes are GraspNet-1Billion's, grasps are per scene and object)::

    <root>/dex_grasps_new/scene_XXXX/leap_hand/<obj_id:03d>.npz
        point [K, 3], translation [K, 3], rotation [K, 3, 3], j0 ... j15 [K] each
    <root>/scenes/scene_XXXX/realsense/annotations/0000.xml
        <obj><obj_id>5</obj_id><obj_name>011_banana.ply</obj_name>...</obj>

Each grasp becomes one episode of one frame: the action is the final grasp (wrist xyz, wrist
quaternion x y z w with w >= 0, 16 joint angles j0..j15) in the scene frame; the release has
no approach trajectory and no proprioceptive state (state width 0). The language is
"grasp the {object}", the object's name taken from the scene annotation ("011_banana.ply" ->
"banana"). Images: the release renders depth and segmentation only, no RGB, so episodes carry
no images; the VLM stage sees none for this dataset.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from drifting_kedro.action_space import get_spec
from drifting_kedro.sources.base import Episode

logger = logging.getLogger(__name__)

DATASET = "dexgraspnet"
JOINT_KEYS = tuple(f"j{i}" for i in range(16))
GRASP_KEYS = ("translation", "rotation", *JOINT_KEYS)


class DexGraspNetFormatError(ValueError):
    """A file that does not follow the DexGraspNet 2.0 release layout."""


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., 4] unit quaternions x y z w, sign-canonical w >= 0."""
    rotation = np.asarray(rotation, dtype=np.float64)
    flat = rotation.reshape(-1, 3, 3)
    quat = Rotation.from_matrix(flat).as_quat()  # [N, 4] x y z w
    quat = np.where(quat[:, 3:4] < 0, -quat, quat)
    return quat.reshape(*rotation.shape[:-2], 4)


def object_name(obj_name: str) -> str:
    """GraspNet model file name -> words: "044_flat_screwdriver.ply" -> "flat screwdriver"."""
    stem = obj_name.rsplit("/", 1)[-1].removesuffix(".ply")
    stem = re.sub(r"^\d+_", "", stem)
    return stem.replace("_", " ").strip()


def scene_object_names(root: str | Path, scene: str, camera: str = "realsense") -> dict[int, str]:
    """obj_id -> object name from the scene's first annotation file ({} when it is missing)."""
    annotations = Path(root) / "scenes" / scene / camera / "annotations"
    files = sorted(annotations.glob("*.xml")) if annotations.is_dir() else []
    if not files:
        logger.warning("no annotations for %s under %s; its grasps get no language", scene, root)
        return {}
    names: dict[int, str] = {}
    for obj in ET.parse(files[0]).getroot().iter("obj"):
        obj_id, name = obj.findtext("obj_id"), obj.findtext("obj_name")
        if obj_id is not None and name:
            names[int(obj_id)] = object_name(name)
    return names


def load_grasps(path: str | Path) -> np.ndarray:
    """One object's grasp file -> [K, 23] native actions (xyz, quat x y z w, j0..j15)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in GRASP_KEYS if k not in data.files]
        if missing:
            raise DexGraspNetFormatError(f"{path}: missing keys {missing} (has {data.files})")
        translation = np.asarray(data["translation"], dtype=np.float64)  # [K, 3]
        rotation = np.asarray(data["rotation"], dtype=np.float64)  # [K, 3, 3]
        joints = np.stack([np.asarray(data[k], dtype=np.float64) for k in JOINT_KEYS], -1)
    k = translation.shape[0]
    if translation.shape != (k, 3) or rotation.shape != (k, 3, 3) or joints.shape != (k, 16):
        raise DexGraspNetFormatError(
            f"{path}: expected translation [K, 3], rotation [K, 3, 3], j0..j15 [K]; got "
            f"{translation.shape}, {rotation.shape}, joints {joints.shape}"
        )
    if not (np.isfinite(rotation).all() and np.isfinite(translation).all()):
        raise DexGraspNetFormatError(f"{path}: non-finite translation or rotation")
    return np.concatenate([translation, rotation_to_quaternion(rotation), joints], axis=-1)


def _numbered(parent: Path, pattern: str) -> list[Path]:
    regex = re.compile(pattern)
    return sorted(p for p in parent.iterdir() if regex.fullmatch(p.name))


def iter_episodes(
    root: str | Path,
    scenes: Sequence[str] | None = None,
    *,
    robot: str = "leap_hand",
    camera: str = "realsense",
    max_episodes: int | None = None,
    max_grasps_per_object: int | None = None,
) -> Iterator[Episode]:
    """One-frame episodes numbered 0, 1, ... over scenes, objects, then grasps (sorted)."""
    grasp_root = Path(root) / "dex_grasps_new"
    if not grasp_root.is_dir():
        raise FileNotFoundError(f"DexGraspNet 2.0 grasps not found: {grasp_root}")
    scene_dirs = (
        [grasp_root / s for s in scenes]
        if scenes is not None
        else _numbered(grasp_root, r"scene_\d+")
    )
    fps = get_spec(DATASET).fps
    index = 0
    for scene_dir in scene_dirs:
        hand_dir = scene_dir / robot
        if not hand_dir.is_dir():
            raise FileNotFoundError(f"no {robot} grasps for {scene_dir.name}: {hand_dir}")
        names = scene_object_names(root, scene_dir.name, camera)
        for path in _numbered(hand_dir, r"\d+\.npz"):
            name = names.get(int(path.stem))
            language = f"grasp the {name}" if name else ""
            grasps = load_grasps(path)  # [K, 23]
            if max_grasps_per_object is not None:
                grasps = grasps[:max_grasps_per_object]
            for grasp in grasps:
                if max_episodes is not None and index >= max_episodes:
                    return
                yield Episode(
                    dataset=DATASET,
                    episode_index=index,
                    language=language,
                    fps=fps,
                    action=grasp[None].astype(np.float32),  # [1, 23]
                    state=np.zeros((1, 0), dtype=np.float32),
                )
                index += 1
