"""Draw docs/figures/drifting_field.png: the drifting field on a 2-D toy.

Run from the repo root: `python docs/figures/make_figures.py`. Generated samples (blue) start as
one Gaussian blob; the data (orange) are two blobs. The arrows are V from
`drifting_kedro.drifting.compute_drift`: attraction to the data minus repulsion from the other
generations, which splits the blob toward both modes.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from drifting_kedro.drifting import compute_drift

OUT = Path(__file__).resolve().parent / "drifting_field.png"


def toy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x [64, 2] generations around the origin, y [256, 2] data in two modes."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.6 * torch.randn(64, 2, generator=gen)
    centers = torch.tensor([[-2.0, 1.0], [2.0, -1.0]])
    y = centers[torch.arange(256) % 2] + 0.3 * torch.randn(256, 2, generator=gen)
    return x, y


def main() -> Path:
    x, y = toy()
    v, stats = compute_drift(x, y)  # [64, 2], negatives = x itself (self-pairs masked)
    scale = stats["feature_scale"]  # V is in feature-normalized units: x / scale
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    ax.scatter(y[:, 0], y[:, 1], s=8, c="tab:orange", label="data (positives)")
    ax.scatter(x[:, 0], x[:, 1], s=8, c="tab:blue", label="generations x (negatives)")
    ax.quiver(
        x[:, 0], x[:, 1], v[:, 0] * scale, v[:, 1] * scale,
        angles="xy", scale_units="xy", scale=10.0, width=0.004, color="tab:blue", alpha=0.8,
    )  # fmt: skip
    ax.set_title("Drifting field V (arrows at 1/10 length): x moves toward x + V")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT)
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    main()
