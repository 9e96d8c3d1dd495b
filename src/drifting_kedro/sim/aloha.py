"""gym-aloha's bimanual ViperX tasks: the joint-space env and the mocap env its expert plans in.

We drive gym-aloha's own dm_control tasks (same XML, same action normalization, same reward)
but skip their observation renders (three 480×640 cameras with 4096² shadow maps per step) and
render only the top camera through `CheapRenderer`.
"""

import collections
import logging

import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.rl import control
from gym_aloha import constants as aloha_constants
from gym_aloha.tasks import sim as aloha_sim
from gym_aloha.tasks.sim_end_effector import (
    InsertionEndEffectorTask,
    TransferCubeEndEffectorTask,
)
from gym_aloha.utils import sample_box_pose, sample_insertion_pose

from drifting_kedro.sim.base import CheapRenderer, Observation, SimEnv, TaskSpec

logger = logging.getLogger(__name__)

ALOHA_TASKS = ("transfer_cube", "insertion")
# gym-aloha's reward levels 1-4 of each task, which `AlohaSimEnv.stage` reports.
ALOHA_STAGES = {
    "transfer_cube": ("touched", "lifted", "transfer_attempted", "success"),
    "insertion": ("touched_both", "grasped_both", "peg_on_socket", "success"),
}
# MuJoCo 3.x softens gym-aloha's mocap welds (solimp .25 .25) so much that the gripper lags
# and the grasped cube slips; a stiff impedance makes the weld track the mocap (measured: the
# transfer-cube replay succeeds on 24/24 seeds with it, 0/8 with MuJoCo's default 0.9 0.95).
MOCAP_WELD_SOLIMP = (0.95, 0.99, 0.001, 0.5, 2.0)
MOCAP_WELD_SOLREF = (0.01, 1.0)


class _JointObservationOnly:
    """Mixin: the task's observation is qpos only (no renders inside the physics step)."""

    def get_observation(self, physics: dm_mujoco.Physics) -> collections.OrderedDict:
        return collections.OrderedDict(qpos=self.get_qpos(physics))


class _TransferCubeTask(_JointObservationOnly, aloha_sim.TransferCubeTask):
    pass


class _InsertionTask(_JointObservationOnly, aloha_sim.InsertionTask):
    pass


class _SeededMocapMixin(_JointObservationOnly):
    """Mixin: place the objects at `object_qpos` instead of gym-aloha's unseeded sample."""

    object_qpos: np.ndarray

    def initialize_episode(self, physics: dm_mujoco.Physics) -> None:
        super().initialize_episode(physics)
        physics.data.qpos[16 : 16 + len(self.object_qpos)] = self.object_qpos


class _TransferCubeMocapTask(_SeededMocapMixin, TransferCubeEndEffectorTask):
    pass


class _InsertionMocapTask(_SeededMocapMixin, InsertionEndEffectorTask):
    pass


def object_qpos_for_seed(task: str, seed: int) -> np.ndarray:
    """The free-joint poses gym-aloha samples for `seed` ([7] cube or [14] peg + socket)."""
    if task == "transfer_cube":
        return sample_box_pose(seed)
    if task == "insertion":
        return np.concatenate(sample_insertion_pose(seed))
    raise ValueError(f"unknown ALOHA task {task!r}; expected one of {ALOHA_TASKS}")


def _environment(task: object, xml_name: str) -> control.Environment:
    physics = dm_mujoco.Physics.from_xml_path(str(aloha_constants.ASSETS_DIR / xml_name))
    return control.Environment(
        physics,
        task,
        time_limit=float("inf"),
        control_timestep=aloha_constants.DT,
        n_sub_steps=None,
        flat_observation=False,
    )


class AlohaSimEnv(SimEnv):
    """Joint-space ALOHA env: action = 14 absolute joints (grippers normalized 0 closed..1 open)."""

    def __init__(
        self, spec: TaskSpec, task: str, image_size: int = 96, max_steps: int | None = None
    ) -> None:
        if task not in ALOHA_TASKS:
            raise ValueError(f"unknown ALOHA task {task!r}; expected one of {ALOHA_TASKS}")
        super().__init__(spec, max_steps)
        self.task = task
        if task == "transfer_cube":
            self._env = _environment(_TransferCubeTask(), "bimanual_viperx_transfer_cube.xml")
        else:
            self._env = _environment(_InsertionTask(), "bimanual_viperx_insertion.xml")
        physics = self._env.physics
        self._renderer = CheapRenderer(physics.model.ptr, image_size, {spec.camera_keys[0]: "top"})
        self._reward = 0.0

    @property
    def physics(self) -> dm_mujoco.Physics:
        return self._env.physics

    def reset(self, seed: int) -> Observation:
        # gym-aloha's joint tasks read the object pose from this module-level slot on reset.
        aloha_sim.BOX_POSE[0] = object_qpos_for_seed(self.task, seed)
        self._env.task.random.seed(seed)
        timestep = self._env.reset()
        self._steps = 0
        self._reward = 0.0
        return self._observation(timestep.observation["qpos"])

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool]:
        action = self._check_step(action)
        timestep = self._env.step(action)
        self._steps += 1
        reward = self._reward = float(timestep.reward)
        success = reward >= self._env.task.max_reward
        done = success or self._steps >= self.max_steps
        return self._observation(timestep.observation["qpos"]), reward, success, done

    def stage(self) -> int:
        return int(self._reward)  # gym-aloha's reward is the stage reached at this step

    def close(self) -> None:
        self._renderer.close()

    def _observation(self, qpos: np.ndarray) -> Observation:
        return Observation(
            images=self._renderer.render(self.physics.data.ptr),
            state=np.asarray(qpos, dtype=np.float32),  # [14]
            instruction=self.spec.instruction,
        )


class AlohaMocapSim:
    """gym-aloha's end-effector (mocap) env, where the scripted expert plans; never rendered.

    Action per step: [left xyz(3) quat(4) gripper(1), right xyz quat gripper] (16), grippers
    normalized 0 closed..1 open. The welds get `MOCAP_WELD_SOLIMP` so grasps hold in MuJoCo 3.
    """

    def __init__(self, task: str) -> None:
        if task == "transfer_cube":
            mocap_task = _TransferCubeMocapTask()
            xml = "bimanual_viperx_end_effector_transfer_cube.xml"
        elif task == "insertion":
            mocap_task = _InsertionMocapTask()
            xml = "bimanual_viperx_end_effector_insertion.xml"
        else:
            raise ValueError(f"unknown ALOHA task {task!r}; expected one of {ALOHA_TASKS}")
        self.task = task
        self._env = _environment(mocap_task, xml)
        model = self._env.physics.model.ptr
        model.eq_solimp[:] = MOCAP_WELD_SOLIMP
        model.eq_solref[:] = MOCAP_WELD_SOLREF

    @property
    def physics(self) -> dm_mujoco.Physics:
        return self._env.physics

    def reset(self, seed: int) -> np.ndarray:
        """Reset with the objects gym-aloha places for `seed`; return qpos [14]."""
        self._env.task.object_qpos = object_qpos_for_seed(self.task, seed)
        self._env.task.random.seed(seed)
        return self._env.reset().observation["qpos"]

    def mocap_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """Current (left, right) mocap poses, each [7] = xyz + wxyz quaternion."""
        data = self.physics.data
        left = np.concatenate([data.mocap_pos[0], data.mocap_quat[0]])
        right = np.concatenate([data.mocap_pos[1], data.mocap_quat[1]])
        return left, right

    def object_qpos(self) -> np.ndarray:
        """Free-joint poses of the task objects ([7] cube, or [14] peg + socket)."""
        return self.physics.data.qpos[16:].copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        """Apply one mocap action [16]; return (qpos [14], reward)."""
        timestep = self._env.step(np.asarray(action, dtype=np.float64))
        return timestep.observation["qpos"], float(timestep.reward)
