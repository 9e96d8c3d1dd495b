"""The one record every data source produces, whatever its on-disk format."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episode:
    """One demonstration: per-frame native actions and states, RGB views and its instruction.

    Sources (LeRobot v3, RLBench, DexGraspNet, the simulators) all yield this, so ingest,
    action mapping and the data videos never need to know where an episode came from.
    """

    dataset: str  # registry name, e.g. "aloha_sim_transfer_cube"
    episode_index: int
    language: str  # from the data, never invented
    fps: float
    action: np.ndarray  # [T, A] float32, native units
    state: np.ndarray  # [T, S] float32, native units
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> [T, H, W, 3] uint8

    @property
    def length(self) -> int:
        return int(self.action.shape[0])
