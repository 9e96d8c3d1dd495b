"""Evaluation panels as PNG bytes (matplotlib, headless), ready to be MLflow artifacts."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def per_dim_error(per_dim: pd.DataFrame) -> bytes:
    """Bar chart of held-out MSE per active unified dim, one panel per dataset."""
    names = list(per_dim["dataset"].unique())
    figure, axes = plt.subplots(len(names), 1, figsize=(8, 2.6 * len(names)), squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=True):
        part = per_dim[per_dim["dataset"] == name]
        axis.bar(part["dim"].astype(str), part["mse"], color="tab:blue")
        axis.set_title(f"{name}: held-out MSE per unified dim (normalized units)")
        axis.set_xlabel("unified dim")
        axis.set_ylabel("MSE")
    figure.tight_layout()
    return _png(figure)


def success_rates(closed_loop: dict[str, dict[str, float]]) -> bytes:
    """Closed-loop success rate per simulated dataset."""
    names = sorted(closed_loop)
    figure, axis = plt.subplots(figsize=(1.8 + 1.6 * len(names), 3.2))
    rates = [closed_loop[name]["success_rate"] for name in names]
    axis.bar(names, rates, color="tab:green")
    for x, rate in enumerate(rates):
        axis.text(x, rate + 0.02, f"{rate:.0%}", ha="center")
    axis.set_ylim(0, 1.1)
    axis.set_ylabel("success rate")
    axis.set_title("closed-loop success")
    return _png(figure)


def latency_bars(latency: dict[str, float]) -> bytes:
    """Median policy-call latency per generator (1-step drifting vs K-step baselines)."""
    keys = sorted(latency)
    figure, axis = plt.subplots(figsize=(8, 3.2))
    axis.barh(keys, [latency[k] for k in keys], color="tab:orange")
    axis.set_xscale("log")
    axis.set_xlabel("median latency (ms, log scale)")
    axis.set_title("one policy call: backbone + generator")
    return _png(figure)
