"""The probe of benchmarks/state_reliance.py recovers how much targets follow the state."""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "state_reliance", Path(__file__).parents[2] / "benchmarks" / "state_reliance.py"
)
reliance = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reliance)


class LinearPolicy:
    """Targets = `gains` * the state's grip xy + a fixed point: the probe must report `gains`."""

    def __init__(self, gains: tuple[float, float]) -> None:
        self.gains = np.array(gains)

    def predict_chunks(
        self, dataset, images, instruction, state, *, num_samples, generator=None
    ) -> np.ndarray:
        assert set(images) and instruction  # the probe passes the real observation through
        target = self.gains * state[:2] + np.array([1.3, 0.75])
        return np.tile(np.concatenate([target, [0.45, 1.0]]), (num_samples, 10, 1))


@pytest.mark.parametrize("gains", [(0.0, 0.0), (0.5, 1.0)])
def test_the_probe_reports_the_slope_of_targets_on_the_state(gains):
    args = argparse.Namespace(shift=0.03, horizon=8, draws=2, image_size=32)
    slopes = reliance.slopes(LinearPolicy(gains), seed=1, expert_steps=3, args=args)
    np.testing.assert_allclose(slopes, gains, atol=1e-5)  # float32 states
