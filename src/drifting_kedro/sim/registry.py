"""The simulated datasets by registry name, and `make_env` to open any of them.

Names, instructions, native layouts, cameras and fps come from the dataset registry
(`drifting_kedro.action_space`); this module adds only what the simulators need. robosuite and
ManiSkill are imported only when one of their envs is opened: each takes seconds to import and
ManiSkill needs a Vulkan driver that a machine recording only ALOHA or Fetch need not have.
"""

from drifting_kedro.action_space import get_spec
from drifting_kedro.sim.aloha import ALOHA_STAGES, AlohaSimEnv
from drifting_kedro.sim.base import SimEnv, TaskSpec
from drifting_kedro.sim.fetch import FETCH_STAGES, FetchSimEnv


def _task(
    name: str, max_steps: int, robot_type: str, stages: tuple[str, ...], **extra: str
) -> TaskSpec:
    dataset = get_spec(name)
    return TaskSpec(
        name=name,
        instruction=dataset.instruction or "",
        fps=int(dataset.fps),
        max_steps=max_steps,
        camera_keys=dataset.cameras,
        action_names=dataset.action_names,
        state_names=dataset.state_names,
        robot_type=robot_type,
        stages=stages,
        extra={"simulator": dataset.source_id, **extra},
    )


SIM_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _task(
            "aloha_sim_transfer_cube",
            400,
            "aloha",
            ALOHA_STAGES["transfer_cube"],
            task="transfer_cube",
        ),
        _task("aloha_sim_insertion", 400, "aloha", ALOHA_STAGES["insertion"], task="insertion"),
        _task("fetch_pick_and_place", 50, "fetch", FETCH_STAGES),
        _task("fetch_push", 50, "fetch", FETCH_STAGES),
        _task("fetch_pick_and_place_abs", 50, "fetch", FETCH_STAGES, absolute="true"),
        _task("robosuite_lift", 60, "robosuite", ("reached", "grasped", "success"), env="Lift"),
        _task(
            "robosuite_can",
            200,
            "robosuite",
            ("reached", "grasped", "lifted", "success"),
            env="PickPlaceCan",
        ),
        _task(
            "maniskill_pick_cube",
            60,
            "maniskill",
            ("reached", "grasped", "success"),
            env="PickCube-v1",
        ),
        _task(
            "maniskill_stack_cube",
            90,
            "maniskill",
            ("reached", "grasped", "on_top", "success"),
            env="StackCube-v1",
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
    if spec.robot_type == "robosuite":
        from drifting_kedro.sim.robosuite import RobosuiteSimEnv

        return RobosuiteSimEnv(spec, image_size=image_size, max_steps=max_steps)
    if spec.robot_type == "maniskill":
        from drifting_kedro.sim.maniskill import ManiSkillSimEnv

        return ManiSkillSimEnv(spec, image_size=image_size, max_steps=max_steps)
    return FetchSimEnv(
        spec,
        spec.extra["simulator"],
        image_size=image_size,
        max_steps=max_steps,
        absolute=spec.extra.get("absolute") == "true",
    )
