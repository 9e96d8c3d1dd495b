"""Offline metrics of predicted action chunks against expert chunks (normalized units).

All functions take the active-dim mask of the dataset, so padding dims never count.
"""

import math
from dataclasses import dataclass

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
    weights = select_diag_gmm(centered @ axes[:2].T, max_components, seed).weights  # [<=2]-D fit
    weights = weights[weights > 1e-12]
    return float(-(weights * np.log(weights)).sum())


@dataclass
class DiagGMM:
    """A fitted diagonal Gaussian mixture."""

    weights: np.ndarray  # [K]
    means: np.ndarray  # [K, D]
    variances: np.ndarray  # [K, D]
    log_likelihood: float  # of the n points it was fitted to
    n: int

    @property
    def bic(self) -> float:
        k, d = self.means.shape
        return -2 * self.log_likelihood + (k * 2 * d + k - 1) * math.log(self.n)

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """log(weight_k · N(x | k)) for points x [N, D]: [N, K]."""
        return (
            -0.5 * (((x[:, None, :] - self.means[None]) ** 2) / self.variances[None]).sum(-1)
            - 0.5 * np.log(2 * np.pi * self.variances).sum(-1)[None]
            + np.log(self.weights + 1e-300)[None]
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Most responsible component of each point x [N, D]: [N] int."""
        return self.log_joint(x).argmax(axis=1)


def select_diag_gmm(x: np.ndarray, max_components: int = 4, seed: int = 0) -> DiagGMM:
    """The BIC-best diagonal GMM on x [N, D] among 1..max_components (at most N - 1) components."""
    if max_components < 1:
        raise ValueError(f"max_components must be >= 1, got {max_components}")
    fits = [fit_diag_gmm(x, k, seed) for k in range(1, max(1, min(max_components, len(x) - 1)) + 1)]
    return min(fits, key=lambda fit: fit.bic)


def fit_diag_gmm(
    x: np.ndarray, k: int, seed: int = 0, iterations: int = 50, relative_floor: float = 0.1
) -> DiagGMM:
    """EM for a k-component diagonal GMM on x [N, D].

    Starts from a hard assignment to k far-apart points (farthest-point traversal from a random
    one): wide initial components all drift to the data's mean and EM stays at that saddle.
    Component variances are floored at `relative_floor` × the total variance of x (+1e-4): with
    a few points, components otherwise shrink onto pairs of points and BIC rewards splitting one
    tight cluster into several. Measured on 4 draws of one 200-D Gaussian (30 seeds), the mixture
    entropy averages 1.0 nats with a 0.01 floor and 0.08 with 0.1, while two clusters ±c with
    spread c/3 still read as log 2 at every seed.
    """
    if not 1 <= k <= len(x):
        raise ValueError(f"a {k}-component GMM needs 1 <= k <= number of points ({len(x)})")
    if iterations < 1:
        raise ValueError(f"EM needs iterations >= 1, got {iterations}")
    n = len(x)
    floor = 1e-4 + relative_floor * float(x.var(0).sum())
    chosen = [int(np.random.default_rng(seed).integers(n))]
    for _ in range(k - 1):
        nearest = ((x[:, None] - x[chosen][None]) ** 2).sum(-1).min(axis=1)  # [N]
        chosen.append(int(nearest.argmax()))
    assign = ((x[:, None] - x[chosen][None]) ** 2).sum(-1).argmin(axis=1)
    resp = np.eye(k)[assign]  # [N, K]
    log_likelihood = -math.inf
    for _ in range(iterations):
        counts = resp.sum(0) + 1e-10
        means = resp.T @ x / counts[:, None]
        gmm = DiagGMM(
            weights=counts / n,
            means=means,
            variances=np.maximum(resp.T @ (x**2) / counts[:, None] - means**2, floor),
            log_likelihood=log_likelihood,
            n=n,
        )
        log_prob = gmm.log_joint(x)  # [N, K]
        norm = np.logaddexp.reduce(log_prob, axis=1, keepdims=True)
        resp = np.exp(log_prob - norm)
        log_likelihood = float(norm.sum())
    gmm.log_likelihood = log_likelihood  # of the last parameters
    return gmm
