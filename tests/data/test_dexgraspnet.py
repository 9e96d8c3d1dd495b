"""DexGraspNet 2.0 release layout: per-object npz grasps + GraspNet scene annotations."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from drifting_kedro.action_space import from_unified, to_unified
from drifting_kedro.sources.dexgraspnet import (
    DexGraspNetFormatError,
    iter_episodes,
    object_name,
    rotation_to_quaternion,
)
from drifting_kedro.sources.validation import validate_episode

ANNOTATION = """<?xml version="1.0" ?>
<scene>
    <obj>
        <obj_id>5</obj_id>
        <obj_name>011_banana.ply</obj_name>
        <obj_path>models/011_banana.ply</obj_path>
    </obj>
    <obj>
        <obj_id>20</obj_id>
        <obj_name>044_flat_screwdriver.ply</obj_name>
        <obj_path>models/044_flat_screwdriver.ply</obj_path>
    </obj>
</scene>
"""


def write_grasps(path, rotations, seed):
    rng = np.random.default_rng(seed)
    k = len(rotations)
    arrays = {
        "point": rng.normal(size=(k, 3)),
        "translation": rng.normal(size=(k, 3)),
        "rotation": rotations,
        **{f"j{i}": rng.uniform(-1, 1, size=k) for i in range(16)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


@pytest.fixture
def root(tmp_path):
    rotations = Rotation.from_euler("xyz", [[0, 0, 0], [0.3, -2.9, 1.0], [3.1, 0.1, -0.2]])
    hand = tmp_path / "dex_grasps_new/scene_0001/leap_hand"
    banana = write_grasps(hand / "005.npz", rotations.as_matrix(), 0)
    write_grasps(hand / "020.npz", rotations.as_matrix()[:1], 1)
    annotations = tmp_path / "scenes/scene_0001/realsense/annotations"
    annotations.mkdir(parents=True)
    (annotations / "0000.xml").write_text(ANNOTATION)
    return tmp_path, banana


def test_quaternion_conversion_is_canonical():
    rot = Rotation.random(50, random_state=0)
    quat = rotation_to_quaternion(rot.as_matrix())
    assert np.all(quat[:, 3] >= 0)
    np.testing.assert_allclose(Rotation.from_quat(quat).as_matrix(), rot.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(rotation_to_quaternion(np.eye(3)), [0, 0, 0, 1])


def test_object_names():
    assert object_name("011_banana.ply") == "banana"
    assert object_name("044_flat_screwdriver.ply") == "flat screwdriver"
    assert object_name("nzskincare_mouth_rinse.ply") == "nzskincare mouth rinse"


def test_episodes_values_and_language(root):
    path, banana = root
    episodes = list(iter_episodes(path))
    assert len(episodes) == 4 and [e.episode_index for e in episodes] == [0, 1, 2, 3]
    assert [e.language for e in episodes] == ["grasp the banana"] * 3 + [
        "grasp the flat screwdriver"
    ]
    second = episodes[1]
    assert second.action.shape == (1, 23) and second.state.shape == (1, 0)
    assert second.images == {} and second.length == 1
    np.testing.assert_allclose(second.action[0, :3], banana["translation"][1], rtol=1e-6)
    quat = second.action[0, 3:7]
    assert quat[3] >= 0
    np.testing.assert_allclose(
        Rotation.from_quat(quat).as_matrix(), banana["rotation"][1], atol=1e-6
    )
    joints = [banana[f"j{i}"][1] for i in range(16)]
    np.testing.assert_allclose(second.action[0, 7:], joints, rtol=1e-6)
    unified = to_unified(second.action, "dexgraspnet")
    np.testing.assert_array_equal(unified[0, 32:48], second.action[0, 7:])
    np.testing.assert_array_equal(from_unified(unified, "dexgraspnet"), second.action)
    assert all(validate_episode(e, "raise") for e in episodes)


def test_limits(root):
    path, _ = root
    assert len(list(iter_episodes(path, max_episodes=2))) == 2
    assert len(list(iter_episodes(path, max_grasps_per_object=1))) == 2
    assert len(list(iter_episodes(path, scenes=["scene_0001"]))) == 4


def test_missing_annotation_gives_no_language(root):
    path, _ = root
    (path / "scenes/scene_0001/realsense/annotations/0000.xml").unlink()
    episode = next(iter_episodes(path))
    assert episode.language == ""
    assert not validate_episode(episode, "skip")


def test_bad_file_is_named(root):
    path, _ = root
    bad = path / "dex_grasps_new/scene_0001/leap_hand/007.npz"
    np.savez(bad, translation=np.zeros((2, 3)), rotation=np.zeros((2, 3, 3)))
    with pytest.raises(DexGraspNetFormatError, match=r"007\.npz: missing keys \['j0'"):
        list(iter_episodes(path))
    with pytest.raises(FileNotFoundError, match="dex_grasps_new"):
        list(iter_episodes(path / "nowhere"))
