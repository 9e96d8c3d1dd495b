"""Scripted experts that produce the simulated demonstrations.

ALOHA (as in the ACT paper's data generation): waypoints for both grippers are planned in
gym-aloha's mocap env from the objects' initial poses, the mocap rollout's joint trajectory is
recorded, and that trajectory (grippers from the plan) becomes the joint-space command.
Fetch: a closed-loop state machine on privileged object/goal positions.
Every expert is deterministic given the env's seed.
"""

import abc
import importlib
import logging
from dataclasses import dataclass

import mujoco
import numpy as np

from drifting_kedro.sim.aloha import AlohaMocapSim, AlohaSimEnv
from drifting_kedro.sim.base import Observation, SimEnv
from drifting_kedro.sim.fetch import FetchSimEnv

logger = logging.getLogger(__name__)


class Expert(abc.ABC):
    """Native actions for one episode: `start` after the env's reset, then `act` every step."""

    @abc.abstractmethod
    def start(self, env: SimEnv, seed: int) -> None:
        """Prepare for the episode `env` was just reset to with `seed`."""

    @abc.abstractmethod
    def act(self, observation: Observation) -> np.ndarray:
        """The native action for the current step."""


# ---------------------------------------------------------------------------------------------
# ALOHA: waypoints in the mocap env, replayed as joint commands
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waypoint:
    """Gripper target reached at control step `t` (linear interpolation in between)."""

    t: int
    xyz: np.ndarray  # [3] world frame
    quat: np.ndarray  # [4] wxyz
    gripper: float  # normalized: 0 closed, 1 open


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return out


def _axis_quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_axisAngle2Quat(out, np.asarray(axis, dtype=np.float64), np.deg2rad(degrees))
    return out


def _interpolate(waypoints: list[Waypoint], t: int) -> np.ndarray:
    """[8] = xyz, quat, gripper at step t (held after the last waypoint)."""
    for here, there in zip(waypoints[:-1], waypoints[1:], strict=True):
        if here.t <= t < there.t:
            frac = (t - here.t) / (there.t - here.t)
            xyz = here.xyz + (there.xyz - here.xyz) * frac
            quat = here.quat + (there.quat - here.quat) * frac
            gripper = here.gripper + (there.gripper - here.gripper) * frac
            return np.concatenate([xyz, quat, [gripper]])
    last = waypoints[-1]
    return np.concatenate([last.xyz, last.quat, [last.gripper]])


def transfer_cube_waypoints(
    left: np.ndarray, right: np.ndarray, cube: np.ndarray
) -> tuple[list[Waypoint], list[Waypoint]]:
    """ACT's pick-and-transfer plan, retimed for joint-space replay in MuJoCo 3.

    The left gripper stops 5 cm short of ACT's meet point and the right keeps its grip until the
    left has closed: in joint space the right wrist's low gains yield when the left pushes the
    cube, so ACT's deeper approach and overlapping open/close drop it.
    """
    pick_quat = _quat_mul(right[3:], _axis_quat((0.0, 1.0, 0.0), -60.0))
    meet_quat = _axis_quat((1.0, 0.0, 0.0), 90.0)
    meet = np.array([0.0, 0.5, 0.25])
    identity = np.array([1.0, 0.0, 0.0, 0.0])
    box = cube[:3]
    left_plan = [
        Waypoint(0, left[:3], left[3:], 0.0),
        Waypoint(100, meet + [-0.1, 0, -0.02], meet_quat, 1.0),  # approach meet position
        Waypoint(260, meet + [-0.03, 0, -0.02], meet_quat, 1.0),  # move to meet position
        Waypoint(290, meet + [-0.03, 0, -0.02], meet_quat, 0.0),  # close gripper
        Waypoint(310, meet + [-0.03, 0, -0.02], meet_quat, 0.0),  # hold while the right opens
        Waypoint(360, meet + [-0.1, 0, -0.02], identity, 0.0),  # go left
        Waypoint(400, meet + [-0.1, 0, -0.02], identity, 0.0),  # stay
    ]
    right_plan = [
        Waypoint(0, right[:3], right[3:], 0.0),
        Waypoint(90, box + [0, 0, 0.08], pick_quat, 1.0),  # approach the cube
        Waypoint(130, box + [0, 0, -0.015], pick_quat, 1.0),  # go down
        Waypoint(170, box + [0, 0, -0.015], pick_quat, 0.0),  # close gripper
        Waypoint(200, meet + [0.05, 0, 0], pick_quat, 0.0),  # approach meet position
        Waypoint(220, meet, pick_quat, 0.0),  # move to meet position
        Waypoint(300, meet, pick_quat, 0.0),  # hold until the left has closed
        Waypoint(310, meet, pick_quat, 1.0),  # open gripper
        Waypoint(360, meet + [0.1, 0, 0], pick_quat, 1.0),  # move to right
        Waypoint(400, meet + [0.1, 0, 0], pick_quat, 1.0),  # stay
    ]
    return left_plan, right_plan


def insertion_waypoints(
    left: np.ndarray, right: np.ndarray, objects: np.ndarray
) -> tuple[list[Waypoint], list[Waypoint]]:
    """ACT's insertion plan: right picks the peg, left picks the socket, they meet mid-air.

    ACT stops each gripper 5 cm from the meet point, where the peg's tip exactly touches the
    pin's (no press). In joint-space replay under MuJoCo 3 the grasped objects then creep in
    the fingers until the tips rest at zero distance and the pin contact comes and goes (2/20
    seeds touched it at the last step). Stopping 7.5 mm deeper per side keeps the peg pressed
    on the pin (measured: 20/20 seeds anywhere from 4.75 to 3.75 cm; at 3 cm the peg's
    fingers hit the socket's mouth and the peg slides back off the pin).
    """
    peg, socket = objects[:3], objects[7:10]
    right_quat = _quat_mul(right[3:], _axis_quat((0.0, 1.0, 0.0), -60.0))
    left_quat = _quat_mul(right[3:], _axis_quat((0.0, 1.0, 0.0), 60.0))
    meet = np.array([0.0, 0.5, 0.15])
    lift_right = 0.00715
    inserted = 0.0425  # gripper to meet point along x once inserted (ACT: 0.05)
    left_plan = [
        Waypoint(0, left[:3], left[3:], 0.0),
        Waypoint(120, socket + [0, 0, 0.08], left_quat, 1.0),  # approach the socket
        Waypoint(170, socket + [0, 0, -0.03], left_quat, 1.0),  # go down
        Waypoint(220, socket + [0, 0, -0.03], left_quat, 0.0),  # close gripper
        Waypoint(285, meet + [-0.1, 0, 0], left_quat, 0.0),  # approach meet position
        Waypoint(340, meet + [-inserted, 0, 0], left_quat, 0.0),  # insert and press
        Waypoint(400, meet + [-inserted, 0, 0], left_quat, 0.0),  # stay
    ]
    right_plan = [
        Waypoint(0, right[:3], right[3:], 0.0),
        Waypoint(120, peg + [0, 0, 0.08], right_quat, 1.0),  # approach the peg
        Waypoint(170, peg + [0, 0, -0.03], right_quat, 1.0),  # go down
        Waypoint(220, peg + [0, 0, -0.03], right_quat, 0.0),  # close gripper
        Waypoint(285, meet + [0.1, 0, lift_right], right_quat, 0.0),  # approach meet position
        Waypoint(340, meet + [inserted, 0, lift_right], right_quat, 0.0),  # insert, press
        Waypoint(400, meet + [inserted, 0, lift_right], right_quat, 0.0),  # stay
    ]
    return left_plan, right_plan


@dataclass
class MocapRollout:
    """The planned episode in the mocap env, ready to replay in joint space."""

    joint_actions: np.ndarray  # [T, 14] joint-space commands
    max_reward: float  # best reward the mocap rollout reached


def plan_aloha(task: str, seed: int, num_steps: int, mocap: AlohaMocapSim) -> MocapRollout:
    """Roll the waypoint plan out in the mocap env and turn it into joint commands.

    Action t is the mocap rollout's arm joints after step t (where the arm should be next) and
    the planned normalized gripper opening of step t (what gym-aloha's joint env expects).
    """
    mocap.reset(seed)
    left, right = mocap.mocap_poses()
    objects = mocap.object_qpos()
    if task == "transfer_cube":
        left_plan, right_plan = transfer_cube_waypoints(left, right, objects)
    else:
        left_plan, right_plan = insertion_waypoints(left, right, objects)
    actions = np.zeros((num_steps, 14))  # [T, 14]
    max_reward = 0.0
    for t in range(num_steps):
        left_cmd, right_cmd = _interpolate(left_plan, t), _interpolate(right_plan, t)
        qpos, reward = mocap.step(np.concatenate([left_cmd, right_cmd]))
        max_reward = max(max_reward, reward)
        actions[t] = qpos
        actions[t, 6], actions[t, 13] = left_cmd[7], right_cmd[7]
    return MocapRollout(joint_actions=actions, max_reward=max_reward)


class AlohaExpert(Expert):
    """Replays the mocap plan of the episode's seed as joint commands (open loop)."""

    def __init__(self) -> None:
        self._mocap: AlohaMocapSim | None = None
        self._actions = np.zeros((0, 14))
        self._t = 0

    def start(self, env: SimEnv, seed: int) -> None:
        if not isinstance(env, AlohaSimEnv):
            raise TypeError(f"AlohaExpert needs an AlohaSimEnv, got {type(env).__name__}")
        if self._mocap is None or self._mocap.task != env.task:
            self._mocap = AlohaMocapSim(env.task)
        self._actions = plan_aloha(env.task, seed, env.max_steps, self._mocap).joint_actions
        self._t = 0

    def act(self, observation: Observation) -> np.ndarray:
        if self._t >= len(self._actions):
            raise RuntimeError("AlohaExpert: the plan is exhausted; call start() for a new episode")
        action = self._actions[self._t]
        self._t += 1
        return action.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Fetch: closed-loop state machines on privileged object and goal positions
# ---------------------------------------------------------------------------------------------

FETCH_GAIN = 10.0  # delta action per metre of error (saturates at 1 = 5 cm/step beyond 10 cm)
GRIPPER_OPEN, GRIPPER_CLOSED = 1.0, -1.0


class FetchExpert(Expert):
    """Shared plumbing: target positions -> the env's native (delta or absolute) actions."""

    def __init__(self) -> None:
        self._env: FetchSimEnv | None = None
        self._phase = "approach"
        self._closing_steps = 0

    def start(self, env: SimEnv, seed: int) -> None:
        if not isinstance(env, FetchSimEnv):
            raise TypeError(f"{type(self).__name__} needs a FetchSimEnv, got {type(env).__name__}")
        self._env = env
        self._phase = "approach"
        self._closing_steps = 0

    def act(self, observation: Observation) -> np.ndarray:
        if self._env is None:
            raise RuntimeError(f"{type(self).__name__}: call start() before act()")
        target, gripper = self._target(self._env)
        if self._env.absolute:
            return np.array([*target, gripper], dtype=np.float32)
        delta = np.clip((target - self._env.grip_position) * FETCH_GAIN, -1.0, 1.0)
        return np.array([*delta, gripper], dtype=np.float32)

    @abc.abstractmethod
    def _target(self, env: FetchSimEnv) -> tuple[np.ndarray, float]:
        """Where the gripper should go next, and the gripper command."""


class FetchPickAndPlaceExpert(FetchExpert):
    """Above the block, descend, close, carry to the goal; re-approach if the block is lost."""

    def _target(self, env: FetchSimEnv) -> tuple[np.ndarray, float]:
        grip, block, goal = env.grip_position, env.object_position, env.goal
        offset = block - grip
        if self._phase == "carry" and np.linalg.norm(offset) > 0.03:
            self._phase = "approach"  # dropped: start over
        if self._phase == "approach":
            if np.linalg.norm(offset[:2]) < 0.01:
                self._phase = "descend"
            else:
                return block + [0.0, 0.0, 0.05], GRIPPER_OPEN
        if self._phase == "descend":
            if np.linalg.norm(offset) < 0.01:
                self._phase, self._closing_steps = "close", 0
            else:
                return block, GRIPPER_OPEN
        if self._phase == "close":
            self._closing_steps += 1
            if self._closing_steps > 3:
                self._phase = "carry"
            return block, GRIPPER_CLOSED
        return goal, GRIPPER_CLOSED


class FetchPushExpert(FetchExpert):
    """Get behind the block on the goal line, lower, then push through its centre to the goal."""

    STANDOFF = (
        0.06  # gripper centre behind the block centre while lining up (block half-size 2.5 cm)
    )

    def _target(self, env: FetchSimEnv) -> tuple[np.ndarray, float]:
        grip, block, goal = env.grip_position, env.object_position, env.goal
        to_goal = goal[:2] - block[:2]
        direction = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
        behind = block[:2] - direction * self.STANDOFF
        # How far the gripper is off the push line, and whether it is behind the block.
        rel = grip[:2] - block[:2]
        lateral = abs(rel[0] * direction[1] - rel[1] * direction[0])
        along = float(rel @ direction)
        if np.linalg.norm(to_goal) < 0.02:
            self._phase = "approach"  # on the goal: keep still, re-line-up only if it moves away
            return grip, GRIPPER_CLOSED
        if self._phase == "push" and (lateral > 0.02 or along > -0.01):
            self._phase = "approach"
        if self._phase == "approach":
            if np.linalg.norm(grip[:2] - behind) < 0.01:
                self._phase = "lower"
            else:
                return np.array([*behind, block[2] + 0.08]), GRIPPER_CLOSED
        if self._phase == "lower":
            if abs(grip[2] - block[2]) < 0.01:
                self._phase = "push"
            else:
                return np.array([*behind, block[2]]), GRIPPER_CLOSED
        # Aim where the gripper will be once the block sits on the goal, at half speed so the
        # block slides with the fingers instead of being knocked away.
        aim = np.array([*(goal[:2] - direction * 0.04), block[2]])
        return grip + (aim - grip) * 0.5, GRIPPER_CLOSED


EXPERTS: dict[str, type[Expert]] = {
    "aloha_sim_transfer_cube": AlohaExpert,
    "aloha_sim_insertion": AlohaExpert,
    "fetch_pick_and_place": FetchPickAndPlaceExpert,
    "fetch_push": FetchPushExpert,
    "fetch_pick_and_place_abs": FetchPickAndPlaceExpert,
}
# Experts of the simulators imported on first use (module, class), as `make_env` opens them.
LAZY_EXPERTS: dict[str, tuple[str, str]] = {
    "robosuite_lift": ("drifting_kedro.sim.robosuite", "LiftExpert"),
    "robosuite_can": ("drifting_kedro.sim.robosuite", "CanExpert"),
    "maniskill_pick_cube": ("drifting_kedro.sim.maniskill", "PickCubeExpert"),
    "maniskill_stack_cube": ("drifting_kedro.sim.maniskill", "StackCubeExpert"),
}


def make_expert(dataset_name: str) -> Expert:
    """The scripted expert of a simulated dataset."""
    if dataset_name in LAZY_EXPERTS:
        module, name = LAZY_EXPERTS[dataset_name]
        return getattr(importlib.import_module(module), name)()
    if dataset_name not in EXPERTS:
        raise ValueError(
            f"no scripted expert for {dataset_name!r}; "
            f"expected one of {sorted([*EXPERTS, *LAZY_EXPERTS])}"
        )
    return EXPERTS[dataset_name]()
