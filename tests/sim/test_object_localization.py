"""The readout of benchmarks/object_localization.py: its figures are only as good as this fit."""

import importlib.util
from pathlib import Path

import numpy as np

_SPEC = importlib.util.spec_from_file_location(
    "object_localization", Path(__file__).parents[2] / "benchmarks" / "object_localization.py"
)
localization = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(localization)


def _linear_scenes(rng: np.random.Generator, n: int, mapping: np.ndarray) -> tuple:
    features = rng.normal(size=(n, mapping.shape[0]))
    return features, features @ mapping + 0.01 * rng.normal(size=(n, mapping.shape[1]))


def test_readout_recovers_a_linear_map_on_held_out_scenes():
    rng = np.random.default_rng(0)
    mapping = rng.normal(size=(40, 6))
    x_train, y_train = _linear_scenes(rng, 300, mapping)
    x_test, y_test = _linear_scenes(rng, 100, mapping)
    xs, xt = localization.standardize(x_train, x_test)
    lam = localization.choose_lambda(xs, y_train)
    weights, mean = localization.fit_ridge(xs, y_train, lam)
    rmse = np.sqrt(((xt @ weights + mean - y_test) ** 2).mean(0))
    assert lam == min(localization.RIDGE_LAMBDAS)  # clean data wants the least shrinkage
    assert (rmse < 0.2 * y_test.std(0)).all()


def test_features_constant_in_training_are_dropped_not_blown_up():
    """A ReLU channel never active on the training scenes must not scale test values by 1e6."""
    rng = np.random.default_rng(1)
    x_train, x_test = rng.normal(size=(50, 5)), rng.normal(size=(20, 5))
    x_train[:, 2] = 0.0
    xs, xt = localization.standardize(x_train, x_test)
    assert xs.shape == (50, 4) and xt.shape == (20, 4)
    assert np.abs(xt).max() < 10
