"""RLBench PerAct layout: pickles naming RLBench's real classes load through the stand-ins."""

import pickle
import sys
import types

import numpy as np
import pytest
from PIL import Image

from drifting_kedro.action_space import get_spec
from drifting_kedro.sources.rlbench import episode_dirs, iter_episodes, load_pickle
from drifting_kedro.sources.validation import validate_episode


@pytest.fixture
def rlbench_classes(monkeypatch):
    """Classes under RLBench's module names, so pickles reference them as RLBench's do."""

    class Observation:
        def __init__(self, gripper_pose, gripper_open, joint_positions):
            self.gripper_pose = gripper_pose
            self.gripper_open = gripper_open
            self.joint_positions = joint_positions
            self.front_rgb = None

    class Demo:
        def __init__(self, observations, random_seed=None):
            self._observations = observations
            self.random_seed = random_seed
            self.variation_number = 0

    modules = {}
    for name in ("rlbench", "rlbench.backend", "rlbench.backend.observation", "rlbench.demo"):
        modules[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, modules[name])
    for cls, module in ((Observation, "rlbench.backend.observation"), (Demo, "rlbench.demo")):
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(modules[module], cls.__name__, cls)
    return Observation, Demo


def pose(t: int) -> np.ndarray:
    return np.array([0.1 * t, 0.2, 0.3 + t, 0.0, 0.0, 0.6, 0.8], dtype=np.float64)


def write_episode(folder, classes, n_obs, description, cameras=("front_rgb", "wrist_rgb")):
    observation, demo = classes
    folder.mkdir(parents=True)
    obs = [observation(pose(t), float(t % 2), np.full(7, t, np.float32)) for t in range(n_obs)]
    (folder / "low_dim_obs.pkl").write_bytes(pickle.dumps(demo(obs, random_seed=3)))
    (folder / "variation_descriptions.pkl").write_bytes(
        pickle.dumps([description, "another phrasing"])
    )
    (folder / "variation_number.pkl").write_bytes(pickle.dumps(0))
    for camera in cameras:
        (folder / camera).mkdir()
        for t in range(n_obs):
            pixels = np.full((16, 16, 3), t * 10, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / camera / f"{t}.png")


@pytest.fixture
def root(tmp_path, rlbench_classes):
    write_episode(
        tmp_path / "close_jar/all_variations/episodes/episode0",
        rlbench_classes,
        4,
        "close the red jar",
    )
    write_episode(
        tmp_path / "close_jar/all_variations/episodes/episode10",
        rlbench_classes,
        3,
        "close the blue jar",
    )
    write_episode(
        tmp_path / "close_jar/all_variations/episodes/episode2",
        rlbench_classes,
        3,
        "close the green jar",
    )
    write_episode(
        tmp_path / "open_drawer/variation1/episodes/episode0",
        rlbench_classes,
        5,
        "open the top drawer",
        cameras=("front_rgb",),
    )
    return tmp_path


def test_pickle_references_real_rlbench_classes(root):
    raw = (root / "close_jar/all_variations/episodes/episode0/low_dim_obs.pkl").read_bytes()
    assert b"rlbench.backend.observation" in raw and b"rlbench.demo" in raw


def test_values_language_and_frames(root):
    episodes = list(iter_episodes(root))
    assert [e.episode_index for e in episodes] == [0, 1, 2, 3]
    first = episodes[0]
    assert first.dataset == "rlbench" and first.language == "close the red jar"
    assert first.length == 3 and first.fps == get_spec("rlbench").fps
    for t in range(3):
        np.testing.assert_allclose(first.state[t], [*pose(t), t % 2])
        np.testing.assert_allclose(first.action[t], [*pose(t + 1), (t + 1) % 2])
    assert first.action.dtype == np.float32 and first.action.shape == (3, 8)
    assert set(first.images) == {"front_rgb", "wrist_rgb"}
    assert first.images["front_rgb"].shape == (3, 16, 16, 3)
    assert first.images["wrist_rgb"][2, 0, 0, 0] == 20
    # numeric episode order (2 before 10), then variation folders of the next task
    assert [e.language for e in episodes[1:]] == [
        "close the green jar",
        "close the blue jar",
        "open the top drawer",
    ]
    assert episodes[3].length == 4 and set(episodes[3].images) == {"front_rgb"}
    assert all(validate_episode(e, "raise") for e in episodes)


def test_filters(root):
    only = list(iter_episodes(root, tasks=["open_drawer"], cameras=["front_rgb"]))
    assert len(only) == 1 and only[0].language == "open the top drawer"
    assert len(list(iter_episodes(root, max_episodes=2))) == 2
    assert len(episode_dirs(root)) == 4
    with pytest.raises(FileNotFoundError, match="camera folder 'overhead_rgb'"):
        list(iter_episodes(root, tasks=["open_drawer"], cameras=["overhead_rgb"]))
    with pytest.raises(FileNotFoundError, match="task 'stack_blocks'"):
        list(iter_episodes(root, tasks=["stack_blocks"]))


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_other_classes(tmp_path):
    path = tmp_path / "low_dim_obs.pkl"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global builtins\.print"):
        load_pickle(path)
    path.write_bytes(pickle.dumps(Exploit))  # a class by reference, from this test module
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_pickle(path)
