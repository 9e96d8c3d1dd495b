"""The simulated datasets by registry name, and `make_env` to open any of them."""

from drifting_kedro.sim.aloha import ALOHA_JOINT_NAMES, AlohaSimEnv
from drifting_kedro.sim.base import SimEnv, TaskSpec
from drifting_kedro.sim.fetch import FetchSimEnv

FETCH_STATE_NAMES = ("grip_x", "grip_y", "grip_z", "gripper_opening")
PICK_AND_PLACE = "Pick up the block and place it at the red target."

SIM_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="aloha_sim_transfer_cube",
            instruction="Pick up the cube with the right arm and transfer it to the left arm.",
            fps=50,
            max_steps=400,
            camera_keys=("observation.images.top",),
            action_names=ALOHA_JOINT_NAMES,
            state_names=ALOHA_JOINT_NAMES,
            robot_type="aloha",
            extra={"simulator": "gym_aloha/AlohaTransferCube-v0", "task": "transfer_cube"},
        ),
        TaskSpec(
            name="aloha_sim_insertion",
            instruction="Insert the peg into the socket.",
            fps=50,
            max_steps=400,
            camera_keys=("observation.images.top",),
            action_names=ALOHA_JOINT_NAMES,
            state_names=ALOHA_JOINT_NAMES,
            robot_type="aloha",
            extra={"simulator": "gym_aloha/AlohaInsertion-v0", "task": "insertion"},
        ),
        TaskSpec(
            name="fetch_pick_and_place",
            instruction=PICK_AND_PLACE,
            fps=25,
            max_steps=50,
            camera_keys=("observation.images.front",),
            action_names=("dx", "dy", "dz", "gripper"),
            state_names=FETCH_STATE_NAMES,
            robot_type="fetch",
            extra={"simulator": "FetchPickAndPlace-v4"},
        ),
        TaskSpec(
            name="fetch_push",
            instruction="Push the block to the red target.",
            fps=25,
            max_steps=50,
            camera_keys=("observation.images.front",),
            action_names=("dx", "dy", "dz", "gripper"),
            state_names=FETCH_STATE_NAMES,
            robot_type="fetch",
            extra={"simulator": "FetchPush-v4"},
        ),
        TaskSpec(
            name="fetch_pick_and_place_abs",
            instruction=PICK_AND_PLACE,
            fps=25,
            max_steps=50,
            camera_keys=("observation.images.front",),
            action_names=("target_x", "target_y", "target_z", "gripper"),
            state_names=FETCH_STATE_NAMES,
            robot_type="fetch",
            extra={"simulator": "FetchPickAndPlace-v4", "absolute": "true"},
        ),
    )
}


def task_spec(dataset_name: str) -> TaskSpec:
    """The fixed facts of a simulated dataset; a clear error for an unknown name."""
    if dataset_name not in SIM_TASKS:
        raise ValueError(
            f"unknown simulated dataset {dataset_name!r}; expected one of {sorted(SIM_TASKS)}"
        )
    return SIM_TASKS[dataset_name]


def make_env(dataset_name: str, image_size: int = 96, max_steps: int | None = None) -> SimEnv:
    """Open the closed-loop env of a simulated dataset, rendering image_size² frames."""
    spec = task_spec(dataset_name)
    if spec.robot_type == "aloha":
        return AlohaSimEnv(spec, spec.extra["task"], image_size=image_size, max_steps=max_steps)
    return FetchSimEnv(
        spec,
        spec.extra["simulator"],
        image_size=image_size,
        max_steps=max_steps,
        absolute=spec.extra.get("absolute") == "true",
    )
