"""robosuite's Lift and PickPlaceCan: the wrapper, its seeding and cameras, and the experts."""

import numpy as np
import pytest

from drifting_kedro.sim import SIM_TASKS, make_env

IMAGE_SIZE = 48  # the Lift cube spans a few pixels of agentview at this size


def _red_rows(image: np.ndarray) -> np.ndarray:
    """Row indices of the strongly red pixels (the cube; nothing else in Lift is red)."""
    red = (image[..., 0] > 120) & (image[..., 1] < 80) & (image[..., 2] < 80)
    return np.nonzero(red)[0]


@pytest.mark.parametrize(
    ("name", "order"),
    [
        ("robosuite_lift", [1, 2, 3]),  # reach, grasp, lift
        ("robosuite_can", [1, 2, 3, 4]),  # reach, grasp, lift, placed in its compartment
    ],
)
def test_expert_reaches_the_stages_in_order(expert_episode, name, order):
    episode = expert_episode(name)
    assert episode.success and episode.order == order
    spec, observation = SIM_TASKS[name], episode.observation
    assert isinstance(episode.reward, float)
    assert sorted(observation.images) == sorted(spec.camera_keys)
    for image in observation.images.values():
        assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8
    assert observation.state.shape == (8,) and observation.state.dtype == np.float32
    assert observation.state[6] >= 0  # qw >= 0
    if name == "robosuite_lift":  # upright images: the lifted cube rises in agentview
        for _ in range(15):  # on to the expert's full 10 cm lift
            observation = episode.env.step(episode.expert.act(observation))[0]
        before = _red_rows(episode.first.images["observation.images.agentview"])
        after = _red_rows(observation.images["observation.images.agentview"])
        assert before.size and after.size, "the cube is not visible in agentview"
        assert after.mean() < before.mean() - 2


@pytest.mark.parametrize("name", ["robosuite_lift", "robosuite_can"])
def test_same_seed_same_episode(envs, name):
    env = envs(name)
    first = env.reset(seed=3)
    hold = np.append(first.state[:7], 1.0)  # stay put, gripper open
    after_first = env.step(hold)[0]
    start = env.object_position
    second = env.reset(seed=3)
    after_second = env.step(hold)[0]
    other = env.reset(seed=5)
    np.testing.assert_array_equal(first.state, second.state)
    np.testing.assert_array_equal(after_first.state, after_second.state)
    for key in first.images:
        np.testing.assert_array_equal(after_first.images[key], after_second.images[key])
    assert not np.allclose(env.object_position, start, atol=1e-3)  # another placement
    assert not np.array_equal(
        first.images["observation.images.agentview"], other.images["observation.images.agentview"]
    )


def test_start_pose_is_near_the_identity(envs):
    """Orientations are measured from pointing straight down, so the start pose's qw ≈ 1."""
    env = envs("robosuite_lift")
    assert env.reset(seed=0).state[6] > 0.95


def test_bad_actions_are_named(envs):
    env = envs("robosuite_lift")
    state = env.reset(seed=0).state
    with pytest.raises(ValueError, match=r"robosuite_lift: action must have shape \(8,\)"):
        env.step(np.zeros(7))
    with pytest.raises(ValueError, match="robosuite_lift: action contains NaN"):
        env.step(np.append(state[:7], np.nan))
    with pytest.raises(ValueError, match="robosuite_lift: action quaternion is zero"):
        env.step(np.array([*state[:3], 0.0, 0.0, 0.0, 0.0, 1.0]))


def test_absolute_action_becomes_scaled_controller_input(envs):
    env = envs("robosuite_lift")
    env.reset(seed=0)
    grip, quat = env.grip_position, env.grip_quat
    hold = env.controller_action(np.array([*grip, *quat, 1.0]))
    np.testing.assert_allclose(hold, [0, 0, 0, 0, 0, 0, -1], atol=1e-6)  # -1: robosuite's open
    quarter_turn = np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # 90° about z
    far = env.controller_action(np.array([*(grip + [0.2, -0.1, 0.0]), *quarter_turn, 0.0]))
    np.testing.assert_allclose(far[:3], [1.0, -0.5, 0.0], atol=1e-6)  # direction kept
    assert np.abs(far[3:6]).max() == pytest.approx(1.0) and far[5] > 0.9  # mostly about +z
    assert far[6] == 1.0  # closed


def test_step_limit_is_enforced():
    env = make_env("robosuite_lift", image_size=16, max_steps=2)
    hold = np.append(env.reset(seed=0).state[:7], 1.0)
    assert not env.step(hold)[3]
    assert env.step(hold)[3]
    with pytest.raises(RuntimeError, match="max_steps=2"):
        env.step(hold)
    env.close()
