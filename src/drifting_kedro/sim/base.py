"""One interface over every simulator, and the cheap headless renderer they share.

Policies, experts and the recorder only see `SimEnv.reset(seed)` / `SimEnv.step(action)` and an
`Observation` in native units, so closed-loop evaluation never branches on the simulator.
"""

import abc
import logging
import os
from dataclasses import dataclass, field

os.environ.setdefault("MUJOCO_GL", "egl")  # headless; read when mujoco is first imported

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class Observation:
    """What a policy sees at one control step, in the dataset's native layout."""

    images: dict[str, np.ndarray]  # camera key -> [H, W, 3] uint8
    state: np.ndarray  # [S] float32
    instruction: str


@dataclass(frozen=True)
class TaskSpec:
    """Fixed facts of one simulated dataset (the shared contract of the registry names)."""

    name: str  # registry name
    instruction: str
    fps: int
    max_steps: int  # default episode length in control steps
    camera_keys: tuple[str, ...]
    action_names: tuple[str, ...]
    state_names: tuple[str, ...]
    robot_type: str
    # Milestones of the task in order, the last one being success: closed-loop evaluation
    # reports how many episodes got how far, which a success rate of 0 cannot tell.
    stages: tuple[str, ...] = ("success",)
    extra: dict[str, str] = field(default_factory=dict)


class SimEnv(abc.ABC):
    """A seeded, headless simulator episode with native actions and states."""

    def __init__(self, spec: TaskSpec, max_steps: int | None = None) -> None:
        """`max_steps`: this env's episode length in control steps (None: the spec's)."""
        self.spec = spec
        self.max_steps = spec.max_steps if max_steps is None else max_steps
        if self.max_steps < 1:
            raise ValueError(f"{spec.name}: max_steps must be >= 1, got {self.max_steps}")
        self._steps = 0  # control steps taken since the last reset

    @abc.abstractmethod
    def reset(self, seed: int) -> Observation:
        """Start the episode that `seed` determines (same seed -> identical episode)."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool]:
        """Apply one native action; return (observation, reward, success, done).

        `done` is True once the episode succeeded or reached `max_steps`; stepping past
        `max_steps` raises, so a runaway loop cannot go unnoticed.
        """

    @abc.abstractmethod
    def stage(self) -> int:
        """How many of `spec.stages` the current state reaches (0 .. len(spec.stages))."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free the renderer's GL context."""

    def _check_step(self, action: np.ndarray) -> np.ndarray:
        """The action as float64 once it has the task's width, is finite, and the episode has a
        step left of `self.max_steps` (subclasses count `self._steps`)."""
        if self._steps >= self.max_steps:
            raise RuntimeError(
                f"{self.spec.name}: episode already ran max_steps={self.max_steps}; call reset()"
            )
        action = np.asarray(action, dtype=np.float64)
        width = len(self.spec.action_names)
        if action.shape != (width,):
            raise ValueError(
                f"{self.spec.name}: action must have shape ({width},) "
                f"({', '.join(self.spec.action_names)}), got {action.shape}"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.spec.name}: action contains NaN/inf: {action.tolist()}")
        return action


class CheapRenderer:
    """Small offscreen renders of chosen cameras with shadows, MSAA and reflections off.

    The simulators' own render paths draw large frames with 4096² shadow maps and 4× MSAA;
    on a CPU (llvmpipe) that costs far more than the physics, so we render only what we record.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        image_size: int,
        cameras: dict[str, int | str | mujoco.MjvCamera],
    ) -> None:
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        model.vis.quality.shadowsize = 0
        model.vis.quality.offsamples = 0
        model.light_castshadow[:] = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, image_size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, image_size)
        self._renderer = mujoco.Renderer(model, height=image_size, width=image_size)
        self._option = mujoco.MjvOption()
        self._cameras = cameras
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
            mujoco.mjtRndFlag.mjRND_FOG,
        ):
            self._renderer.scene.flags[flag] = 0

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """Return camera key -> [H, W, 3] uint8 for the current state of `data`."""
        images = {}
        for key, camera in self._cameras.items():
            self._renderer.update_scene(data, camera=camera, scene_option=self._option)
            images[key] = self._renderer.render()  # a fresh array per call
        return images

    def close(self) -> None:
        self._renderer.close()
