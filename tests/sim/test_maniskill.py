"""ManiSkill envs and experts: native actions and states, determinism, stages, missing Vulkan."""

import os
import subprocess
import sys

import numpy as np
import pytest

from drifting_kedro.sim import SIM_TASKS, make_env, make_expert
from drifting_kedro.sim.maniskill import grasp_yaw
from drifting_kedro.sim.record import rollout

NAMES = ["maniskill_pick_cube", "maniskill_stack_cube"]


@pytest.mark.parametrize(
    ("name", "order"),
    [
        ("maniskill_pick_cube", [1, 2, 3]),  # reach, grasp, cube on the goal
        ("maniskill_stack_cube", [1, 2, 3, 4]),  # reach, grasp, A on B, released
    ],
)
def test_expert_reaches_the_stages_in_order(expert_episode, name, order):
    episode = expert_episode(name)
    assert episode.success and episode.order == order
    observation, reward = episode.observation, episode.reward
    keys = SIM_TASKS[name].camera_keys
    assert sorted(observation.images) == sorted(keys)
    for key in keys:
        assert observation.images[key].shape == (32, 32, 3)
        assert observation.images[key].dtype == np.uint8
        assert observation.images[key].std() > 0
    assert not np.array_equal(observation.images[keys[0]], observation.images[keys[1]])
    assert observation.state.shape == (8,) and observation.state.dtype == np.float32
    assert observation.state[6] >= 0  # qw
    assert observation.instruction == SIM_TASKS[name].instruction
    assert isinstance(reward, float)


def test_same_seed_same_episode_whatever_came_before():
    """PhysX keeps contact state across resets; the env rebuilds the scene so it cannot leak."""
    env = make_env("maniskill_stack_cube", image_size=32, max_steps=30)
    expert = make_expert("maniskill_stack_cube")
    first = rollout(env, expert, 3)
    other = rollout(env, expert, 8)
    again = rollout(env, expert, 3)
    env.close()
    for key, value in first.frames.items():
        np.testing.assert_array_equal(value, again.frames[key])
    assert not np.array_equal(first.frames["observation.state"], other.frames["observation.state"])
    for key in SIM_TASKS["maniskill_stack_cube"].camera_keys:
        assert not np.array_equal(first.frames[key][0], other.frames[key][0])  # cubes moved


def test_gripper_goes_to_the_pose_it_is_given(envs):
    """The action's pose is reached in the state's frame and quaternion convention."""
    env = envs("maniskill_pick_cube")
    state = env.reset(seed=1).state
    yaw = np.deg2rad(30.0)
    target = np.array([*(state[:3] + [0.05, -0.03, -0.04]), 0, 0, np.sin(yaw / 2), np.cos(yaw / 2)])
    for _ in range(20):
        state = env.step(np.array([*target, 1.0]))[0].state
    np.testing.assert_allclose(state[:3], target[:3], atol=0.005)
    assert abs(float(state[3:7] @ target[3:7])) > np.cos(np.deg2rad(3.0) / 2)  # within 3 degrees
    assert state[7] > 0.07  # open: 8 cm between the fingers


def test_bad_actions_are_named(envs):
    env = envs("maniskill_pick_cube")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"maniskill_pick_cube: action must have shape \(8,\)"):
        env.step(np.zeros(7))
    with pytest.raises(ValueError, match="maniskill_pick_cube: action contains NaN"):
        env.step(np.array([0.5, 0.0, 0.1, 0.0, 0.0, 0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="maniskill_pick_cube: action quaternion has zero norm"):
        env.step(np.array([0.5, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0]))


def test_step_limit_is_enforced():
    env = make_env("maniskill_pick_cube", image_size=16, max_steps=2)
    state = env.reset(seed=0).state
    hold = np.array([*state[:7], 1.0])
    assert not env.step(hold)[3]
    assert env.step(hold)[3]
    with pytest.raises(RuntimeError, match="max_steps=2"):
        env.step(hold)
    env.close()


def test_grasp_yaw_puts_the_fingers_on_faces_away_from_a_neighbour():
    assert grasp_yaw(np.deg2rad(100.0)) == pytest.approx(np.deg2rad(10.0))
    assert grasp_yaw(np.deg2rad(-50.0)) == pytest.approx(np.deg2rad(40.0))
    # The fingers close along (sin yaw, -cos yaw): across a neighbour in +x they must close in y.
    assert grasp_yaw(np.deg2rad(80.0), np.array([1.0, 0.0])) == pytest.approx(0.0, abs=0.2)
    assert abs(grasp_yaw(np.deg2rad(80.0), np.array([0.0, 1.0]))) == pytest.approx(np.deg2rad(80.0))


def test_missing_vulkan_driver_names_what_to_install():
    """sapien raises an opaque vk:: error without a Vulkan driver; ours says what to install."""
    missing = "/nonexistent/vulkan_icd.json"
    env = {**os.environ, "VK_ICD_FILENAMES": missing, "VK_DRIVER_FILES": missing}
    script = "from drifting_kedro.sim import make_env; make_env('maniskill_pick_cube', 16)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr[-2000:]  # an exception, not a crash
    assert "RuntimeError: maniskill_pick_cube: ManiSkill renders through Vulkan" in result.stderr
    assert "apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1" in result.stderr
