"""Offline metrics of predicted action chunks against expert chunks (normalized units).

All functions take the active-dim mask of the dataset, so padding dims never count.
"""

import math

import numpy as np


def masked_mse_per_dim(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean squared error per unified dim over samples and chunk steps: [128] (NaN where inactive).

    Args:
        prediction: [N, T, 128]. target: [N, T, 128]. mask: [128] bool.
    """
    error = ((prediction - target) ** 2).mean(axis=(0, 1))
    return np.where(mask, error, np.nan)


def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD² between sample sets with a Gaussian kernel (median-distance bandwidth).

    Args:
        x: [N, D] generated samples. y: [M, D] expert samples.
    """
    joint = np.concatenate([x, y])
    sq = np.maximum(
        (joint**2).sum(1)[:, None] + (joint**2).sum(1)[None, :] - 2 * joint @ joint.T, 0.0
    )
    if bandwidth is None:
        bandwidth = float(np.sqrt(np.median(sq[np.triu_indices(len(joint), 1)]) / 2) + 1e-12)
    kernel = np.exp(-sq / (2 * bandwidth**2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def gmm_entropy(samples: np.ndarray, max_components: int = 4, seed: int = 0) -> float:
    """Entropy (nats) of the mixture weights of a diagonal GMM fitted to one observation's draws.

    0 when the draws form one mode; log(k) when they split evenly into k modes. Draws are first
    projected on their top two principal axes (a chunk has hundreds of dims and G is small); the
    number of components is chosen by BIC among 1..max_components; EM runs in NumPy.
    """
    centered = samples - samples.mean(axis=0)
    _, _, axes = np.linalg.svd(centered, full_matrices=False)
    samples = centered @ axes[:2].T  # [G, <=2]
    best_bic, best_weights = math.inf, np.ones(1)
    for k in range(1, min(max_components, len(samples) - 1) + 1):
        weights, log_likelihood, params = _fit_diag_gmm(samples, k, seed)
        bic = -2 * log_likelihood + params * math.log(len(samples))
        if bic < best_bic:
            best_bic, best_weights = bic, weights
    weights = best_weights[best_weights > 1e-12]
    return float(-(weights * np.log(weights)).sum())


def _fit_diag_gmm(x: np.ndarray, k: int, seed: int, iterations: int = 50):
    rng = np.random.default_rng(seed)
    n, d = x.shape
    means = x[rng.choice(n, size=k, replace=False)]
    variances = np.tile(x.var(0) + 1e-4, (k, 1))
    weights = np.full(k, 1.0 / k)
    for _ in range(iterations):
        log_prob = (
            -0.5 * (((x[:, None, :] - means[None]) ** 2) / variances[None]).sum(-1)
            - 0.5 * np.log(2 * np.pi * variances).sum(-1)[None]
            + np.log(weights)[None]
        )  # [N, K]
        norm = np.logaddexp.reduce(log_prob, axis=1, keepdims=True)
        resp = np.exp(log_prob - norm)
        counts = resp.sum(0) + 1e-10
        weights = counts / n
        means = resp.T @ x / counts[:, None]
        variances = resp.T @ (x**2) / counts[:, None] - means**2 + 1e-4
    log_likelihood = float(norm.sum())
    params = k * 2 * d + (k - 1)
    return weights, log_likelihood, params
