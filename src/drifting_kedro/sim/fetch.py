"""gymnasium-robotics Fetch tasks: delta-EEF control, plus an absolute-EEF-target variant.

The unwrapped MuJoCo env is stepped directly (our own step limit replaces gymnasium's
TimeLimit) and rendered through `CheapRenderer` from fixed free cameras: one facing the robot,
one from its side.
"""

import contextlib
import io
import logging

import gymnasium as gym
import mujoco
import numpy as np

from drifting_kedro.sim.base import CheapRenderer, Observation, SimEnv, TaskSpec

# Importing it prints a notice about its Adroit hand envs' rewards, which this project never uses.
with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics

logger = logging.getLogger(__name__)

gym.register_envs(gymnasium_robotics)

FETCH_MAX_DELTA = 0.05  # metres of mocap motion per unit of action (gymnasium-robotics' scale)
# Free cameras by registry camera key. One view cannot place a goal floating above the table
# (height and depth share the image's vertical axis); the side view, across the first, can.
CAMERAS = {
    "observation.images.front": {"azimuth": 180.0, "elevation": -35.0, "distance": 1.3},
    "observation.images.side": {"azimuth": 90.0, "elevation": -20.0, "distance": 1.2},
}
CAMERA_LOOKAT = (1.3, 0.75, 0.5)  # the middle of the table, where blocks and goals are sampled
FETCH_STAGES = ("reached", "moved", "success")  # what `FetchSimEnv.stage` counts
REACHED_DISTANCE = 0.03  # grip centre to block centre (the block is 5 cm wide), metres
MOVED_DISTANCE = 0.02  # block displacement from where the episode placed it, metres


def _free_camera(key: str) -> mujoco.MjvCamera:
    if key not in CAMERAS:
        raise ValueError(f"Fetch has no camera {key!r}; expected one of {sorted(CAMERAS)}")
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.lookat[:] = CAMERA_LOOKAT
    for name, value in CAMERAS[key].items():
        setattr(camera, name, value)
    return camera


class FetchSimEnv(SimEnv):
    """A Fetch task with state = [grip x, y, z, finger opening] and native 4-D actions.

    With `absolute=True` the action is [target x, y, z, gripper] in the world frame; the wrapper
    turns it into the env's delta action ((target - grip) / 0.05, clipped to [-1, 1]).
    """

    def __init__(
        self,
        spec: TaskSpec,
        env_id: str,
        image_size: int = 96,
        max_steps: int | None = None,
        absolute: bool = False,
    ) -> None:
        super().__init__(spec, max_steps)
        self.absolute = absolute
        self._env = gym.make(env_id).unwrapped
        self._renderer = CheapRenderer(
            self._env.model, image_size, {key: _free_camera(key) for key in spec.camera_keys}
        )
        self._raw: dict[str, np.ndarray] = {}
        self._success = False
        self._object_start = np.zeros(3)

    def reset(self, seed: int) -> Observation:
        self._raw, _ = self._env.reset(seed=seed)
        self._env._render_callback()  # moves the red target site onto this episode's goal
        self._steps = 0
        self._success = False
        self._object_start = self.object_position
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool]:
        action = self._check_step(action)
        if self.absolute:
            action = self.delta_action(action)
        self._raw, reward, _, _, info = self._env.step(action)
        self._steps += 1
        success = self._success = bool(info["is_success"])
        done = success or self._steps >= self.max_steps
        return self._observation(), float(reward), success, done

    def delta_action(self, absolute_action: np.ndarray) -> np.ndarray:
        """Absolute [target xyz, gripper] -> the env's delta action, clipped to its limits."""
        delta = (np.asarray(absolute_action[:3]) - self.grip_position) / FETCH_MAX_DELTA
        gripper = absolute_action[3:4]
        return np.clip(np.concatenate([delta, gripper]), -1.0, 1.0)

    @property
    def grip_position(self) -> np.ndarray:
        return self._raw["observation"][:3].copy()  # [3]

    @property
    def object_position(self) -> np.ndarray:
        return self._raw["observation"][3:6].copy()  # [3]

    @property
    def goal(self) -> np.ndarray:
        return self._raw["desired_goal"].copy()  # [3]

    def stage(self) -> int:
        """0, 1 the grip reached the block, 2 the block moved, 3 success (FETCH_STAGES)."""
        if self._success:
            return 3
        if np.linalg.norm(self.object_position - self._object_start) > MOVED_DISTANCE:
            return 2
        return int(np.linalg.norm(self.grip_position - self.object_position) < REACHED_DISTANCE)

    def close(self) -> None:
        self._renderer.close()
        self._env.close()

    def _observation(self) -> Observation:
        raw = self._raw["observation"]
        state = np.array([raw[0], raw[1], raw[2], raw[9] + raw[10]], dtype=np.float32)  # [4]
        return Observation(
            images=self._renderer.render(self._env.data),
            state=state,
            instruction=self.spec.instruction,
        )
