"""Offline metrics: masked MSE, MMD², GMM entropy and the diagonal GMM behind it."""

import math

import numpy as np
import pytest

from drifting_kedro.evaluation.metrics import (
    fit_diag_gmm,
    gmm_entropy,
    masked_mse_per_dim,
    mmd_rbf,
    select_diag_gmm,
)


def test_masked_mse_per_dim_is_nan_outside_the_mask():
    rng = np.random.default_rng(0)
    prediction, target = rng.normal(size=(2, 4, 3, 128))
    mask = np.zeros(128, bool)
    mask[[2, 5, 40]] = True
    mse = masked_mse_per_dim(prediction, target, mask)
    assert mse.shape == (128,)
    assert np.isnan(mse[~mask]).all()
    expected = ((prediction[..., mask] - target[..., mask]) ** 2).mean(axis=(0, 1))
    np.testing.assert_allclose(mse[mask], expected)


def test_mmd_is_near_zero_for_one_distribution_and_clearly_positive_for_a_shift():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 200, 8))
    same = mmd_rbf(x, y)
    shifted = mmd_rbf(x, y + 1.5)
    assert abs(same) < 0.02
    assert shifted > 0.2
    assert shifted > 20 * abs(same)


def test_gmm_entropy_is_zero_for_one_tight_cluster():
    rng = np.random.default_rng(0)
    draws = 3.0 + 0.01 * rng.normal(size=(16, 40))  # G=16 draws of a 40-D chunk
    assert gmm_entropy(draws) == pytest.approx(0.0, abs=0.05)


def test_gmm_entropy_is_log2_for_two_separated_equal_clusters():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=40)
    draws = np.concatenate(
        [centre + 0.05 * rng.normal(size=(8, 40)), -centre + 0.05 * rng.normal(size=(8, 40))]
    )
    assert gmm_entropy(draws) == pytest.approx(math.log(2), abs=0.05)


def test_gmm_entropy_reads_few_draws_of_one_gaussian_as_one_mode():
    """G is small (4-8): scattered draws of one mode must not look multimodal."""
    entropies = [
        gmm_entropy(np.random.default_rng(seed).normal(size=(8, 200))) for seed in range(10)
    ]
    assert np.mean(entropies) < 0.1


def test_bic_picks_the_number_of_clusters_and_predict_assigns_points():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    labels = np.repeat(np.arange(3), 40)
    points = centres[labels] + 0.3 * rng.normal(size=(120, 2))
    gmm = select_diag_gmm(points, max_components=5)
    assert len(gmm.weights) == 3
    predicted = gmm.predict(points)
    # the same partition up to renaming of the components
    assert len({(a, b) for a, b in zip(labels, predicted, strict=True)}) == 3


def test_gmm_with_more_components_than_points_is_rejected():
    with pytest.raises(ValueError, match="3-component GMM"):
        fit_diag_gmm(np.zeros((2, 2)), 3)
