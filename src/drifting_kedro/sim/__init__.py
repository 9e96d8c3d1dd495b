"""Simulated demonstrations and closed-loop envs: ALOHA (gym-aloha) and Fetch (gymnasium-robotics).

`make_env(name)` opens any simulated dataset's env; `record_dataset(name, root, n, seed)` writes
n successful scripted demonstrations as a LeRobot v3 dataset.
"""

import os

# Headless rendering: mujoco and dm_control pick their GL backend when first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

from drifting_kedro.sim.base import Observation, SimEnv, TaskSpec  # noqa: E402
from drifting_kedro.sim.experts import Expert, make_expert  # noqa: E402
from drifting_kedro.sim.record import (  # noqa: E402
    GenerationReport,
    demo_seeds,
    eval_seeds,
    record_dataset,
    recorded_seeds,
)
from drifting_kedro.sim.registry import SIM_TASKS, make_env, task_spec  # noqa: E402

__all__ = [
    "SIM_TASKS",
    "Expert",
    "GenerationReport",
    "Observation",
    "SimEnv",
    "TaskSpec",
    "demo_seeds",
    "eval_seeds",
    "make_env",
    "make_expert",
    "record_dataset",
    "recorded_seeds",
    "task_spec",
]
