"""robosuite's Lift and PickPlaceCan (robomimic's benchmark tasks) with a Panda under absolute
gripper-pose actions.

Frame: positions are in the robosuite world frame (the Panda's base sits at a fixed offset with
no rotation). Orientations are the gripper's rotation away from pointing straight down with
its fingers closing along world y (its home pose), as x y z w with qw >= 0: the grip site's own
world quaternion has qw ≈ 0 when it points down, where the qw >= 0 rule would flip the sign of
the other three components back and forth; measured from pointing down, the poses the tasks
use stay near the identity.

The action [x, y, z, qx, qy, qz, qw, gripper_open] becomes the default Panda controller's input
(robomimic's OSC_POSE with delta input): the step from the measured to the target pose,
scaled down as a whole (direction kept) to the controller's per-step limits of 5 cm and
0.5 rad, and the gripper command 1 - 2 * gripper_open (robosuite: -1 open, +1 closed; the
Panda gripper moves its fingers towards the sign of it). The env is stepped through
robosuite's own `step`; cameras are rendered through `CheapRenderer` on the raw MuJoCo model.
"""

import abc
import contextlib
import logging
from collections.abc import Iterator

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from drifting_kedro.sim.base import CheapRenderer, Observation, SimEnv, TaskSpec
from drifting_kedro.sim.experts import Expert


class _DropRobosuiteNotices(logging.Filter):
    """Drops robosuite's import/make notices about optional extras this project never uses."""

    NOTICES = (
        "No private macro file found",
        "It is recommended to use a private macro file",
        "To setup, run:",
        "Could not import robosuite_models",
        "Could not load the mink-based whole-body IK",
        "Loading controller configuration",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.NOTICES)


# robosuite logs through this logger (with its own console handler) from its first import on.
logging.getLogger("robosuite_logs").addFilter(_DropRobosuiteNotices())

import robosuite  # noqa: E402

CAMERAS = {  # registry camera key -> robosuite camera
    "observation.images.agentview": "agentview",
    "observation.images.wrist": "robot0_eye_in_hand",
}
# The grip site's axes (columns, world frame) when it points straight down with its fingers
# closing along world y: the identity of the orientation this wrapper reports.
GRIP_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
MAX_STEP_POSITION = 0.05  # metres per control step at a controller input of 1 (OSC_POSE default)
MAX_STEP_ROTATION = 0.5  # radians per control step at a controller input of 1
# robosuite's collision geoms (group 0) overlap their visual copies (group 1) in garish colours;
# its own renders hide group 0, ours move it to a group MuJoCo does not draw by default.
COLLISION_GROUP, HIDDEN_GROUP = 0, 3
MODEL_SEED = 0  # Lift draws its cube's size when the model is built; every env gets the same
REACHED_DISTANCE = 0.03  # grip site to object centre: the fingers are around it, metres
LIFTED_HEIGHT = 0.05  # Can: object raised this far above where the episode placed it, metres


@contextlib.contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the block and restore it afterwards.

    robosuite 1.5.1 draws object placements, cube sizes and the arm's initial joint noise from
    the global numpy RNG (its `seed` argument and `env.rng` are never read by them).
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class RobosuiteSimEnv(SimEnv):
    """A robosuite task with state = [grip x, y, z, qx, qy, qz, qw, finger opening]."""

    def __init__(self, spec: TaskSpec, image_size: int = 96, max_steps: int | None = None) -> None:
        super().__init__(spec, max_steps)
        unknown = sorted(set(spec.camera_keys) - set(CAMERAS))
        if unknown:
            raise ValueError(
                f"{spec.name}: robosuite has no camera {unknown}; expected {sorted(CAMERAS)}"
            )
        with _numpy_seeded(MODEL_SEED):
            self._env = robosuite.make(
                spec.extra["env"],
                robots="Panda",
                has_renderer=False,
                has_offscreen_renderer=False,
                use_camera_obs=False,
                control_freq=spec.fps,
                # A soft reset keeps one MuJoCo model (and so one renderer) for every episode.
                hard_reset=False,
                ignore_done=True,  # our own step limit replaces robosuite's horizon
                renderer="mujoco",  # robosuite's default builds an interactive viewer
            )
        self._model: mujoco.MjModel = self._env.sim.model._model
        self._data: mujoco.MjData = self._env.sim.data._data
        self._robot = self._env.robots[0]
        self._grip_site = self._robot.eef_site_id["right"]
        self._finger_qpos = [
            self._model.joint(name).qposadr[0] for name in self._robot.gripper["right"].joints
        ]
        self._object = self._env.cube if spec.extra["env"] == "Lift" else None
        if self._object is None:
            self._object = self._env.objects[self._env.object_id]
        self._object_body = self._model.body(self._object.root_body).id
        self._model.geom_group[self._model.geom_group == COLLISION_GROUP] = HIDDEN_GROUP
        self._renderer = CheapRenderer(
            self._model, image_size, {key: CAMERAS[key] for key in spec.camera_keys}
        )
        self._success = False
        self._object_start = np.zeros(3)

    def reset(self, seed: int) -> Observation:
        with _numpy_seeded(seed):
            self._env.reset()
        self._steps = 0
        self._success = False
        self._object_start = self.object_position
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool]:
        action = self._check_step(action)
        _, reward, _, _ = self._env.step(self.controller_action(action))
        self._steps += 1
        success = self._success = bool(self._env._check_success())
        done = success or self._steps >= self.max_steps
        return self._observation(), float(reward), success, done

    def controller_action(self, action: np.ndarray) -> np.ndarray:
        """Native [target pose, gripper_open] -> the OSC_POSE delta input [7] in [-1, 1]."""
        norm = np.linalg.norm(action[3:7])
        if norm < 1e-6:
            raise ValueError(f"{self.spec.name}: action quaternion is zero: {action.tolist()}")
        target = Rotation.from_quat(action[3:7] / norm).as_matrix()
        rotation = Rotation.from_matrix(target @ self.grip_rotation.T).as_rotvec()
        translation = action[:3] - self.grip_position
        translation /= max(MAX_STEP_POSITION, np.abs(translation).max())
        rotation /= max(MAX_STEP_ROTATION, np.abs(rotation).max())
        gripper = np.clip(1.0 - 2.0 * action[7], -1.0, 1.0)
        return np.array([*translation, *rotation, gripper])

    @property
    def grip_position(self) -> np.ndarray:
        return self._data.site_xpos[self._grip_site].copy()  # [3]

    @property
    def grip_rotation(self) -> np.ndarray:
        """[3, 3] the gripper's axes in the world frame, relative to pointing down."""
        return self._data.site_xmat[self._grip_site].reshape(3, 3) @ GRIP_DOWN.T

    @property
    def grip_quat(self) -> np.ndarray:
        """[4] x y z w, qw >= 0, relative to pointing down (see the module docstring)."""
        return _canonical(Rotation.from_matrix(self.grip_rotation).as_quat())

    @property
    def finger_opening(self) -> float:
        first, second = self._finger_qpos
        return float(self._data.qpos[first] - self._data.qpos[second])

    @property
    def object_position(self) -> np.ndarray:
        """The cube's (Lift) or the can's centre."""
        return self._data.xpos[self._object_body].copy()  # [3]

    @property
    def object_rotation(self) -> np.ndarray:
        return self._data.xmat[self._object_body].reshape(3, 3).copy()  # [3, 3]

    @property
    def bin_compartment(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Can: the x-y corners (low [2], high [2]) of the can's bin compartment and the bins'
        base height, as robosuite's success test bounds them."""
        centre = self._env.target_bin_placements[self._env.object_id]
        half = self._env.bin_size[:2] / 4
        return centre[:2] - half, centre[:2] + half, float(centre[2])

    @property
    def grasped(self) -> bool:
        """robosuite's own test: both finger pads touch the object."""
        return bool(self._env._check_grasp(gripper=self._robot.gripper, object_geoms=self._object))

    def stage(self) -> int:
        """Lift: 1 reached, 2 grasped, 3 success. Can: 1 reached, 2 grasped, 3 lifted, 4 success."""
        stages = self.spec.stages
        if self._success:
            return len(stages)
        raised = self.object_position[2] - self._object_start[2]
        if "lifted" in stages and raised > LIFTED_HEIGHT:
            return stages.index("lifted") + 1
        if self.grasped:
            return stages.index("grasped") + 1
        return int(np.linalg.norm(self.grip_position - self.object_position) < REACHED_DISTANCE)

    def close(self) -> None:
        self._renderer.close()
        self._env.close()

    def _observation(self) -> Observation:
        state = np.array(
            [*self.grip_position, *self.grip_quat, self.finger_opening], dtype=np.float32
        )  # [8]
        return Observation(
            images=self._renderer.render(self._data),
            state=state,
            instruction=self.spec.instruction,
        )


def _canonical(quat: np.ndarray) -> np.ndarray:
    """The sign of a x y z w quaternion with qw >= 0 (q and -q are the same rotation)."""
    return -quat if quat[3] < 0 else quat


def _yaw(rotation: np.ndarray) -> float:
    """Rotation about world z of a frame whose z axis points (nearly) straight up or down."""
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


# ---------------------------------------------------------------------------------------------
# Experts: closed-loop state machines on the privileged object pose
# ---------------------------------------------------------------------------------------------

GRIPPER_OPEN, GRIPPER_CLOSED = 1.0, 0.0
APPROACH_HEIGHT = 0.06  # grip site above the grasp point before descending, metres
AT_TARGET = 0.01  # position error that counts as arrived, metres
YAW_ALIGNED = 0.1  # yaw error allowed before descending onto the object, radians
MIN_CLOSING_STEPS = 5  # the fingers take about 6 steps from open to a 4-5 cm object
MAX_CLOSING_STEPS = 15  # then go on anyway: a missed grasp shows as the object left behind
HELD_DISTANCE = 0.03  # grip site to grasp point while the object is held, metres


class _PickExpert(Expert):
    """Above the object, descend, close; what follows the grasp is the task's (`_after_grasp`).

    Every step re-reads the object's pose, and an object that leaves the fingers before the
    task's release restarts the approach from wherever it lies.
    """

    GRASP_HEIGHT = 0.0  # grip site above the object's centre when closing, metres
    HOLDING_PHASES = ("lift",)  # phases in which the object must stay in the fingers

    def __init__(self) -> None:
        self._env: RobosuiteSimEnv | None = None
        self._phase = "approach"
        self._closing_steps = 0
        self._object_start = np.zeros(3)

    def start(self, env: SimEnv, seed: int) -> None:
        if not isinstance(env, RobosuiteSimEnv):
            raise TypeError(
                f"{type(self).__name__} needs a RobosuiteSimEnv, got {type(env).__name__}"
            )
        self._env = env
        self._phase = "approach"
        self._closing_steps = 0
        self._object_start = env.object_position

    def act(self, observation: Observation) -> np.ndarray:
        if self._env is None:
            raise RuntimeError(f"{type(self).__name__}: call start() before act()")
        position, yaw, gripper = self._target(self._env)
        quat = [0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]
        return np.array([*position, *quat, gripper], dtype=np.float32)

    def _target(self, env: RobosuiteSimEnv) -> tuple[np.ndarray, float, float]:
        """Where the grip site goes next, its yaw and the gripper command."""
        grip = env.grip_position
        grasp = env.object_position + [0.0, 0.0, self.GRASP_HEIGHT]
        yaw = self._grasp_yaw(env)
        if self._phase in self.HOLDING_PHASES and np.linalg.norm(grip - grasp) > HELD_DISTANCE:
            self._phase = "approach"  # dropped: start over
        if self._phase == "approach":
            above = grasp + [0.0, 0.0, APPROACH_HEIGHT]
            yaw_error = abs(_wrap(yaw - _yaw(env.grip_rotation)))
            if np.linalg.norm(grip[:2] - grasp[:2]) < AT_TARGET and yaw_error < YAW_ALIGNED:
                self._phase = "descend"
            else:
                return above, yaw, GRIPPER_OPEN
        if self._phase == "descend":
            if np.linalg.norm(grip - grasp) < AT_TARGET:
                self._phase, self._closing_steps = "close", 0
            else:
                return grasp, yaw, GRIPPER_OPEN
        if self._phase == "close":
            self._closing_steps += 1
            grasped = env.grasped and self._closing_steps >= MIN_CLOSING_STEPS
            if not grasped and self._closing_steps <= MAX_CLOSING_STEPS:
                return grasp, yaw, GRIPPER_CLOSED
            self._phase = "lift"
        return self._after_grasp(env, yaw)

    def _grasp_yaw(self, env: RobosuiteSimEnv) -> float:
        """The gripper's yaw for the grasp (a round object: the home yaw)."""
        return 0.0

    @abc.abstractmethod
    def _after_grasp(self, env: RobosuiteSimEnv, yaw: float) -> tuple[np.ndarray, float, float]:
        """The target once the object is in the fingers (phase "lift" first)."""


class LiftExpert(_PickExpert):
    """Grasp the cube across two faces (gripper yaw = cube yaw modulo 90 degrees) and lift it."""

    LIFT = 0.1  # grip site above where the cube started, metres

    def _grasp_yaw(self, env: RobosuiteSimEnv) -> float:
        """Of the cube's four face-aligned yaws, the one nearest the gripper's current yaw."""
        current = _yaw(env.grip_rotation)
        return current + _wrap(_yaw(env.object_rotation) - current, period=np.pi / 2)

    def _after_grasp(self, env: RobosuiteSimEnv, yaw: float) -> tuple[np.ndarray, float, float]:
        return self._object_start + [0.0, 0.0, self.LIFT], yaw, GRIPPER_CLOSED


class CanExpert(_PickExpert):
    """Grasp the can's upper half, carry it over the bin walls to its compartment, let go above
    the compartment's floor, and rise clear (robosuite's success wants the gripper away)."""

    GRASP_HEIGHT = 0.02
    HOLDING_PHASES = ("lift", "carry", "lower")
    CARRY_HEIGHT = 0.2  # grip site above the bins' base: the can's bottom clears the walls
    RELEASE_HEIGHT = 0.1  # grip site above the bins' base when letting go: 2 cm drop
    RELEASE_STEPS = 5  # for the fingers to open before rising
    # Can centre to the compartment's walls at the drop point (can radius 2.5 cm, walls 1 cm).
    DROP_MARGIN = 0.055

    def __init__(self) -> None:
        super().__init__()
        self._release_steps = 0
        self._drop = np.zeros(2)  # x-y where the can is let go
        self._bin_base = 0.0

    def start(self, env: SimEnv, seed: int) -> None:
        super().start(env, seed)
        self._release_steps = 0
        # The compartment's far side is at the edge of the Panda's reach: drop the can at the
        # compartment's point nearest where the gripper started.
        low, high, self._bin_base = self._env.bin_compartment
        margin = self.DROP_MARGIN
        self._drop = np.clip(self._env.grip_position[:2], low + margin, high - margin)

    def _after_grasp(self, env: RobosuiteSimEnv, yaw: float) -> tuple[np.ndarray, float, float]:
        grip = env.grip_position
        carry_start = np.array([*self._object_start[:2], self._bin_base + self.CARRY_HEIGHT])
        carry_end = np.array([*self._drop, self._bin_base + self.CARRY_HEIGHT])
        release = np.array([*self._drop, self._bin_base + self.RELEASE_HEIGHT])
        if self._phase == "lift":
            if grip[2] < carry_start[2] - 2 * AT_TARGET:
                return carry_start, yaw, GRIPPER_CLOSED
            self._phase = "carry"
        if self._phase == "carry":
            if np.linalg.norm(grip[:2] - carry_end[:2]) > AT_TARGET:
                return carry_end, yaw, GRIPPER_CLOSED
            self._phase = "lower"
        if self._phase == "lower":
            if np.linalg.norm(grip - release) > AT_TARGET:
                return release, yaw, GRIPPER_CLOSED
            self._phase, self._release_steps = "release", 0
        if self._phase == "release":
            self._release_steps += 1
            if self._release_steps <= self.RELEASE_STEPS:
                return release, yaw, GRIPPER_OPEN
            self._phase = "rise"
        return carry_end, yaw, GRIPPER_OPEN


def _wrap(angle: float, period: float = 2 * np.pi) -> float:
    """`angle` shifted by whole periods into [-period / 2, period / 2)."""
    return float((angle + period / 2) % period - period / 2)
