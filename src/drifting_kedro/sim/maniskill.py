"""ManiSkill 3 tabletop tasks (PickCube, StackCube) on a Panda, driven by absolute gripper poses.

Frame: action and state share the robot's base frame (the Panda's root link: the world shifted
0.615 m along x, same orientation), the frame ManiSkill's absolute `pd_ee_pose` controller takes
targets in. The orientation is the gripper's rotation away from pointing straight down with the
fingers closing along base y: a top-down grasp turned by yaw ψ is the quaternion of ψ about z.
The gripper link's own quaternion has qw ≈ 0 when pointing down, so under the qw >= 0 convention
every small tilt would flip its sign; measured from "pointing down", qw stays near 1.

The unwrapped env is simulated on the CPU (physx_cpu) and stepped directly (our own step limit
replaces ManiSkill's TimeLimit). sapien renders through Vulkan (Mesa's lavapipe on a CPU-only
machine) with ManiSkill's minimal shader (no shadows) and the arm drawn as its collision hulls:
ManiSkill's "base_camera", looking at the table from the front, and a side camera added here,
across it, so height and depth separate. PickCube's goal marker, hidden from ManiSkill's
cameras, is shown: the policy sees only images and the gripper state.
"""

import abc
import re
import warnings

import gymnasium as gym
import numpy as np
import sapien
import torch

from drifting_kedro.sim.base import Observation, SimEnv, TaskSpec
from drifting_kedro.sim.experts import Expert

# sapien warns on import when it falls back to its bundled Vulkan loader; a missing driver is
# reported by `ManiSkillSimEnv` instead, with what to install.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Failed to find system libvulkan")
    import mani_skill.envs  # noqa: F401 (registers the tasks with gymnasium)
    from mani_skill.envs.sapien_env import BaseEnv
    from mani_skill.sensors.camera import Camera, CameraConfig
    from mani_skill.utils import sapien_utils
    from mani_skill.utils.geometry.rotation_conversions import (
        matrix_to_euler_angles,
        quaternion_multiply,
        quaternion_to_matrix,
    )
    from mani_skill.utils.structs.pose import Pose

# ManiSkill's sensor camera by registry camera key.
CAMERAS = {"observation.images.base": "base_camera", "observation.images.side": "side_camera"}
# Across the base camera, low enough that the goal's height shows as image height; 1 rad of
# view covers every cube and goal position of both tasks.
SIDE_CAMERA_EYE, SIDE_CAMERA_TARGET, SIDE_CAMERA_FOV = (-0.05, 0.75, 0.3), (-0.05, 0.0, 0.12), 1.0
# The red cube to grasp and what it goes to, by ManiSkill task: the goal's actor, and how far
# above it the cube's centre belongs.
TASK_ACTORS = {"PickCube-v1": ("cube", "goal_site", 0.0), "StackCube-v1": ("cubeA", "cubeB", 0.04)}
MAX_TRANSLATION = 0.05  # metres per control step the target may lead the gripper (1 m/s at 20 Hz)
REACHED_DISTANCE = 0.025  # gripper centre to cube centre (the cubes are 4 cm wide), metres
# Rotation by pi about x (w, x, y, z): from "pointing down" to the gripper link and back.
POINTING_DOWN = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
ARM_COLOR = (0.8, 0.8, 0.8, 1.0)  # the Panda's white links
VULKAN_ERROR = re.compile(r"vk::|vulkan|physical device", re.IGNORECASE)
VULKAN_HINT = (
    "ManiSkill renders through Vulkan and no usable Vulkan driver was found. Install the Vulkan "
    "loader and a driver; for CPU rendering (Mesa's lavapipe) on Debian 12: "
    "apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1 (the project's "
    "scripts/install_vulkan.sh does this)"
)


def _pose_array(pose: Pose) -> np.ndarray:
    """A batch-of-one ManiSkill pose -> [7] float64 (x, y, z, qx, qy, qz, qw) with qw >= 0."""
    raw = pose.raw_pose[0].double()
    quaternion = torch.cat([raw[4:], raw[3:4]])
    if quaternion[3] < 0:
        quaternion = -quaternion
    return torch.cat([raw[:3], quaternion]).numpy()


def _render_arm_as_collision_hulls(env: BaseEnv) -> None:
    """Draw the arm links and hand as their convex collision hulls (4 k triangles, not 130 k).

    On lavapipe the arm's detailed meshes cost ~40 ms per camera and frame, ten times the rest
    of the scene; the hulls keep the arm's silhouette. The fingers are cheap and keep their
    meshes, so the gripper's opening still shows.
    """
    material = sapien.render.RenderMaterial(base_color=ARM_COLOR)
    for link in env.agent.robot.links:
        entity = link._objs[0].entity
        visual = entity.find_component_by_type(sapien.render.RenderBodyComponent)
        shapes = entity.find_component_by_type(sapien.physx.PhysxArticulationLinkComponent)
        hulls = shapes.collision_shapes
        convex = sapien.physx.PhysxCollisionShapeConvexMesh
        if visual is None or not hulls or not all(isinstance(h, convex) for h in hulls):
            continue
        hull_visual = sapien.render.RenderBodyComponent()
        for hull in hulls:
            corners = (hull.vertices * hull.scale)[hull.triangles]  # [T, 3 corners, 3]
            normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
            normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
            count = len(corners) * 3
            mesh = sapien.render.RenderShapeTriangleMesh(
                corners.reshape(count, 3).astype(np.float32),
                np.arange(count, dtype=np.uint32).reshape(-1, 3),
                np.repeat(normals, 3, axis=0).astype(np.float32),  # flat shading
                np.zeros((count, 2), dtype=np.float32),
                material,
            )
            mesh.local_pose = hull.local_pose
            hull_visual.attach(mesh)
        entity.remove_component(visual)
        entity.add_component(hull_visual)


def _make(spec: TaskSpec, image_size: int) -> BaseEnv:
    try:
        env = gym.make(
            spec.extra["env"],
            obs_mode="rgb",
            control_mode="pd_ee_pose",
            robot_uids="panda",
            sensor_configs={"width": image_size, "height": image_size},
            sim_backend="physx_cpu",
            render_backend="cpu",
            num_envs=1,
        )
    except RuntimeError as error:
        if VULKAN_ERROR.search(str(error)):
            raise RuntimeError(f"{spec.name}: {VULKAN_HINT} (sapien: {error})") from error
        raise
    return env.unwrapped


class ManiSkillSimEnv(SimEnv):
    """A ManiSkill task with state = [gripper pose, finger opening] and absolute pose actions.

    The action's target position is clipped to `MAX_TRANSLATION` from the gripper, so a far
    target (a goal) is approached at a bounded speed instead of in one jump of the joints. The
    gripper command maps linearly from [0 closed, 1 open] to ManiSkill's [-1, 1]. A pose the
    controller's inverse kinematics cannot solve (beyond the arm's reach) holds the arm still.
    """

    def __init__(self, spec: TaskSpec, image_size: int = 96, max_steps: int | None = None) -> None:
        super().__init__(spec, max_steps)
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        if spec.extra.get("env") not in TASK_ACTORS:
            raise ValueError(
                f"{spec.name}: no ManiSkill task {spec.extra.get('env')!r}; "
                f"expected one of {sorted(TASK_ACTORS)}"
            )
        unknown = set(spec.stages) - {"reached", "grasped", "on_top", "success"}
        if unknown or (spec.extra["env"] != "StackCube-v1" and "on_top" in spec.stages):
            raise ValueError(f"{spec.name}: cannot tell stages {spec.stages}")
        self._image_size = image_size
        self._env = _make(spec, image_size)
        self._cube_name, self._goal_name, self._goal_height = TASK_ACTORS[spec.extra["env"]]
        self._raw: dict = {}
        self._info: dict = {}

    def reset(self, seed: int) -> Observation:
        # A plain reset keeps PhysX's contact state, so an episode would depend on the one before
        # it; rebuilding the scene (~0.3 s) makes each seed's episode the same in any order.
        self._env.reset(seed=seed, options={"reconfigure": True})
        self._adapt_scene()
        self._info = self._env.get_info()
        self._raw = self._env.get_obs(self._info)
        self._steps = 0
        return self._observation()

    def _adapt_scene(self) -> None:
        """Cheap arm visuals, a visible goal and the side camera, on a freshly built scene."""
        _render_arm_as_collision_hulls(self._env)
        # PickCube hides its goal marker from the sensor cameras; the policy must see the goal.
        for hidden in self._env._hidden_objects:
            hidden.show_visual()
        self._env._hidden_objects.clear()
        side = CameraConfig(
            CAMERAS["observation.images.side"],
            sapien_utils.look_at(eye=SIDE_CAMERA_EYE, target=SIDE_CAMERA_TARGET),
            self._image_size,
            self._image_size,
            SIDE_CAMERA_FOV,
        )
        self._env._sensors[side.uid] = Camera(side, self._env.scene)  # the scene's sensor dict
        self._cube = getattr(self._env, self._cube_name)
        self._goal = getattr(self._env, self._goal_name)
        self._arm = self._env.agent.controller.controllers["arm"]
        self._to_base = self._arm.root_link.pose.inv()

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool]:
        action = self._check_step(action)
        command = self.controller_action(action)
        with warnings.catch_warnings():
            # ManiSkill checks the action tensor for NaN with numpy (NaN was rejected above).
            warnings.filterwarnings("ignore", message="__array_wrap__", category=DeprecationWarning)
            self._raw, reward, _, _, self._info = self._env.step(command)
        self._steps += 1
        success = self.success
        done = success or self._steps >= self.max_steps
        return self._observation(), float(reward), success, done

    def controller_action(self, action: np.ndarray) -> np.ndarray:
        """Native [xyz, quaternion xyzw, open] -> `pd_ee_pose`'s [xyz, euler XYZ, gripper]."""
        quaternion = np.asarray(action[3:7], dtype=np.float64)
        norm = float(np.linalg.norm(quaternion))
        if norm < 1e-6:
            raise ValueError(f"{self.spec.name}: action quaternion has zero norm: {action[3:7]}")
        offset = np.asarray(action[:3], dtype=np.float64) - self.grip_pose[:3]
        distance = float(np.linalg.norm(offset))
        if distance > MAX_TRANSLATION:
            offset *= MAX_TRANSLATION / distance
        wxyz = torch.from_numpy(np.roll(quaternion / norm, 1))
        link = quaternion_multiply(wxyz, POINTING_DOWN)
        euler = matrix_to_euler_angles(quaternion_to_matrix(link), "XYZ").numpy()
        gripper = 2.0 * np.clip(action[7], 0.0, 1.0) - 1.0  # ManiSkill: -1 closed, 1 open
        return np.concatenate([self.grip_pose[:3] + offset, euler, [gripper]]).astype(np.float32)

    @property
    def grip_pose(self) -> np.ndarray:
        """[7] gripper centre and orientation from pointing down, base frame, qw >= 0."""
        link = self._arm.ee_pose_at_base
        pointing_down = quaternion_multiply(link.q.double(), POINTING_DOWN)
        return _pose_array(Pose.create_from_pq(link.p, pointing_down))

    @property
    def grip_opening(self) -> float:
        """Distance between the fingers, metres."""
        return float(self._env.agent.robot.get_qpos()[0, -2:].sum())

    @property
    def cube_pose(self) -> np.ndarray:
        """[7] the red cube's pose in the base frame (its own orientation, not the gripper's)."""
        return _pose_array(self._to_base * self._cube.pose)

    @property
    def goal_position(self) -> np.ndarray:
        """[3] where the red cube's centre belongs, base frame."""
        goal = _pose_array(self._to_base * self._goal.pose)[:3]
        return goal + [0.0, 0.0, self._goal_height]

    @property
    def is_grasped(self) -> bool:
        return bool(self._env.agent.is_grasping(self._cube)[0])

    @property
    def success(self) -> bool:
        return bool(self._info["success"][0])

    def stage(self) -> int:
        """The last of `spec.stages` the current state meets (0 if none)."""
        met = {
            "reached": np.linalg.norm(self.grip_pose[:3] - self.cube_pose[:3]) < REACHED_DISTANCE,
            "grasped": self.is_grasped,
            "on_top": bool(self._info.get("is_cubeA_on_cubeB", [False])[0]),
            "success": self.success,
        }
        for index in range(len(self.spec.stages), 0, -1):
            if met[self.spec.stages[index - 1]]:
                return index
        return 0

    def close(self) -> None:
        self._env.close()

    def _observation(self) -> Observation:
        sensors = self._raw["sensor_data"]
        state = np.array([*self.grip_pose, self.grip_opening], dtype=np.float32)  # [8]
        return Observation(
            images={key: sensors[CAMERAS[key]]["rgb"][0].numpy() for key in self.spec.camera_keys},
            state=state,
            instruction=self.spec.instruction,
        )


# ---------------------------------------------------------------------------------------------
# Experts: closed-loop state machines on privileged cube and goal positions
# ---------------------------------------------------------------------------------------------

OPEN, CLOSED = 1.0, 0.0
HOVER_HEIGHT = 0.08  # above the cube's centre while lining up, metres
ALIGNED_DISTANCE = 0.01  # gripper to its lining-up or grasping point, metres
ALIGNED_YAW = np.deg2rad(5.0)  # gripper yaw to the cube's faces before descending
CLOSING_STEPS = 5  # the fingers close on a 4 cm cube in about 3 control steps
LOST_DISTANCE = 0.03  # cube centre to gripper centre beyond which the grasp is lost, metres
CARRY_HEIGHT = 0.06  # PickCube: lowest cube height while carrying it sideways (not dragged)
STACK_CLEARANCE = 0.03  # cube A's bottom above cube B's top before lowering it, metres
RELEASE_HEIGHT = 0.004  # cube A's bottom above B's top at which the gripper opens, metres
RELEASE_STEPS = 4
RETREAT_HEIGHT = 0.15  # gripper above cube B once cube A is released, metres


def _yaw(quaternion: np.ndarray) -> float:
    """Heading of a quaternion's x axis about z (x-y-z-w order)."""
    qx, qy, qz, qw = quaternion
    return float(np.arctan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz)))


def _yaw_quaternion(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, np.sin(yaw / 2.0), np.cos(yaw / 2.0)])


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2.0 * np.pi) - np.pi)


def grasp_yaw(cube_yaw: float, obstacle_direction: np.ndarray | None = None) -> float:
    """Gripper yaw that puts the fingers on two opposite faces of a cube turned by `cube_yaw`.

    The fingers close along the gripper's y axis, so any multiple of 90 degrees from the cube's
    yaw fits; of the two within +-90 degrees of the home yaw, the one closing across
    `obstacle_direction` (towards a neighbouring cube, in the x-y plane) keeps the fingers off
    the neighbour, otherwise the one nearer home.
    """
    nearest = float((cube_yaw + np.pi / 4.0) % (np.pi / 2.0) - np.pi / 4.0)  # [-45°, 45°)
    if obstacle_direction is None or not np.any(obstacle_direction):
        return nearest
    other = nearest + np.pi / 2.0 if nearest < 0 else nearest - np.pi / 2.0
    direction = obstacle_direction / np.linalg.norm(obstacle_direction)

    def along_fingers(yaw: float) -> float:
        return abs(direction @ [np.sin(yaw), -np.cos(yaw)])

    return min((nearest, other), key=along_fingers)


class ManiSkillExpert(Expert):
    """Shared grasp: line up above the red cube, descend with the fingers on its faces, close."""

    def __init__(self) -> None:
        self._env: ManiSkillSimEnv | None = None
        self._phase = "approach"
        self._yaw = 0.0
        self._wait = 0
        self._hold = np.zeros(3)

    def start(self, env: SimEnv, seed: int) -> None:
        if not isinstance(env, ManiSkillSimEnv):
            raise TypeError(
                f"{type(self).__name__} needs a ManiSkillSimEnv, got {type(env).__name__}"
            )
        self._env = env
        self._phase = "approach"
        self._yaw = 0.0
        self._wait = 0
        self._hold = np.zeros(3)

    def act(self, observation: Observation) -> np.ndarray:
        if self._env is None:
            raise RuntimeError(f"{type(self).__name__}: call start() before act()")
        target, gripper = self._target(self._env)
        return np.array([*target, *_yaw_quaternion(self._yaw), gripper], dtype=np.float32)

    def _grasp(
        self, env: ManiSkillSimEnv, obstacle: np.ndarray | None
    ) -> tuple[np.ndarray, float] | None:
        """The next target while grasping; None once the cube is held."""
        grip, cube = env.grip_pose, env.cube_pose
        if self._phase == "approach":
            direction = None if obstacle is None else obstacle[:2] - cube[:2]
            self._yaw = grasp_yaw(_yaw(cube[3:]), direction)
            above = cube[:3] + [0.0, 0.0, HOVER_HEIGHT]
            lined_up = np.linalg.norm(grip[:3] - above) < ALIGNED_DISTANCE * 2
            turned = abs(_wrap(_yaw(grip[3:]) - self._yaw)) < ALIGNED_YAW
            if not (lined_up and turned):
                return above, OPEN
            self._phase = "descend"
        if self._phase == "descend":
            if np.linalg.norm(grip[:3] - cube[:3]) > ALIGNED_DISTANCE:
                return cube[:3], OPEN
            self._phase, self._wait = "close", 0
        if self._phase == "close":
            self._wait += 1
            if self._wait <= CLOSING_STEPS:
                return cube[:3], CLOSED
            self._phase = "carry"
        if np.linalg.norm(grip[:3] - cube[:3]) > LOST_DISTANCE:
            self._phase = "approach"  # dropped: start over
            return self._grasp(env, obstacle)
        return None

    @abc.abstractmethod
    def _target(self, env: ManiSkillSimEnv) -> tuple[np.ndarray, float]:
        """Where the gripper should go next, and the gripper command."""


class PickCubeExpert(ManiSkillExpert):
    """Grasp the cube, lift it, carry it so its centre sits on the goal, and hold still there."""

    def _target(self, env: ManiSkillSimEnv) -> tuple[np.ndarray, float]:
        grasping = self._grasp(env, obstacle=None)
        if grasping is not None:
            return grasping
        grip, cube, goal = env.grip_pose[:3], env.cube_pose[:3], env.goal_position
        if np.linalg.norm(goal[:2] - cube[:2]) > ALIGNED_DISTANCE:
            goal = np.array([*goal[:2], max(goal[2], CARRY_HEIGHT)])
        return grip + (goal - cube), CLOSED  # move the cube, not the gripper, onto the goal


class StackCubeExpert(ManiSkillExpert):
    """Grasp cube A, carry it above cube B, lower it onto B, open, and back off upwards."""

    def _target(self, env: ManiSkillSimEnv) -> tuple[np.ndarray, float]:
        grip, cube, stacked = env.grip_pose[:3], env.cube_pose[:3], env.goal_position
        if self._phase in ("release", "retreat"):
            return self._let_go(env)
        grasping = self._grasp(env, obstacle=stacked)
        if grasping is not None:
            return grasping
        if self._phase == "carry":
            above = stacked + [0.0, 0.0, STACK_CLEARANCE]
            if np.linalg.norm(cube - above) > ALIGNED_DISTANCE:
                low = cube[2] < above[2] - ALIGNED_DISTANCE
                if low and np.linalg.norm(cube[:2] - above[:2]) > ALIGNED_DISTANCE:
                    above[:2] = cube[:2]  # straight up first, so cube A cannot sweep into B
                return grip + (above - cube), CLOSED
            self._phase = "lower"
        if cube[2] - stacked[2] > RELEASE_HEIGHT:
            return grip + (stacked - cube), CLOSED
        self._phase, self._wait, self._hold = "release", 0, grip.copy()
        return self._let_go(env)

    def _let_go(self, env: ManiSkillSimEnv) -> tuple[np.ndarray, float]:
        if self._phase == "release":
            self._wait += 1
            if self._wait <= RELEASE_STEPS:
                return self._hold, OPEN
            self._phase = "retreat"
        stacked = env.goal_position
        if np.linalg.norm(env.cube_pose[:3] - stacked) > LOST_DISTANCE:
            self._phase = "approach"  # fell off cube B: start over
            return self._target(env)
        return np.array([*self._hold[:2], stacked[2] + RETREAT_HEIGHT]), OPEN
