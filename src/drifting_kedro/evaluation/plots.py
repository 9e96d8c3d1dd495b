"""Evaluation panels as PNG bytes (matplotlib, headless), ready to be MLflow artifacts.

Every panel takes arrays and returns PNG bytes. The offline panels show one dataset's held-out
draws in normalized action units on its active dims, with one colour code throughout: policy draws
orange, expert chunks green. "Chunk" panels flatten a [T, A] chunk to one T·A vector; 2-D views
are its projection on the top two principal axes (PCA) of the points shown.
"""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from drifting_kedro.evaluation.metrics import select_diag_gmm  # noqa: E402

POLICY, EXPERT = "tab:orange", "tab:green"
# Mode colours avoid the policy/expert pair above.
MODES = ("tab:blue", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Summary panels (every dataset)
# ---------------------------------------------------------------------------------------------


def per_dim_error_radar(per_dim: pd.DataFrame) -> bytes:
    """Held-out MSE per active dim as a spider chart, one polar panel per dataset.

    Args:
        per_dim: one row per (dataset, active dim) with columns dataset, dim, name, mse.
    """
    names = list(per_dim["dataset"].unique())
    figure, axes = plt.subplots(
        1, len(names), figsize=(6.8 * len(names), 6.4), subplot_kw={"projection": "polar"}
    )
    for axis, name in zip(np.atleast_1d(axes), names, strict=True):
        part = per_dim[per_dim["dataset"] == name]
        step = 2 * np.pi / len(part)
        angles = np.arange(len(part)) * step + step / 2  # no spoke on the vertical: labels clash
        closed = np.append(angles, angles[:1])
        values = np.append(part["mse"].to_numpy(), part["mse"].to_numpy()[:1])
        axis.plot(closed, values, color="tab:blue", marker="o", markersize=3)
        axis.fill(closed, values, color="tab:blue", alpha=0.2)
        axis.set_xticks(angles, list(part["name"]), fontsize=7)
        for label, angle in zip(axis.get_xticklabels(), angles, strict=True):
            label.set_horizontalalignment("left" if np.cos(angle) > 0 else "right")
        axis.set_rlabel_position(0)
        axis.tick_params(axis="y", labelsize=7)
        axis.set_title(f"{name}\nheld-out MSE per active dim (normalized units)", pad=22)
    figure.tight_layout()
    return _png(figure)


def success_rates(closed_loop: dict[str, dict[str, float]]) -> bytes:
    """Closed-loop success rate per simulated dataset, with its 95 % interval when known."""
    names = sorted(closed_loop)
    figure, axis = plt.subplots(figsize=(1.8 + 1.6 * len(names), 3.2))
    rates = [closed_loop[name]["success_rate"] for name in names]
    axis.bar(names, rates, color="tab:green")
    tops = rates
    if all("success_ci95_low" in closed_loop[name] for name in names):
        lows = [closed_loop[name]["success_ci95_low"] for name in names]
        tops = [closed_loop[name]["success_ci95_high"] for name in names]
        spread = np.abs(np.array([lows, tops]) - np.array(rates))
        axis.errorbar(names, rates, yerr=spread, fmt="none", ecolor="black", capsize=4)
    for x, (rate, top) in enumerate(zip(rates, tops, strict=True)):
        axis.text(x, top + 0.02, f"{rate:.0%}", ha="center")
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


# ---------------------------------------------------------------------------------------------
# Offline panels (one dataset's held-out draws)
# ---------------------------------------------------------------------------------------------


def dataset_panels(
    dataset: str,
    draws: np.ndarray,
    experts: np.ndarray,
    drift: np.ndarray,
    dim_names: list[str],
) -> dict[str, bytes]:
    """Every offline panel of one dataset as `<dataset>/<panel>.png`.

    Args:
        draws: [n, G, T, A] policy draws. experts: [n, T, A]. drift: [n, G, T, A] field s·V.
        dim_names: [A] names of the active dims.
    """
    n, g = draws.shape[:2]
    flat_draws, flat_experts = draws.reshape(n, g, -1), experts.reshape(n, -1)  # [n, G, F], [n, F]
    panels = {
        "drifting_field": drifting_field(
            flat_draws, flat_experts, drift.reshape(n, g, -1), dataset
        ),
        "sample_transport": sample_transport(flat_draws, flat_experts, dataset),
        "mode_coverage": mode_coverage(flat_draws, flat_experts, dataset),
        "prediction_scatter": prediction_scatter(draws, experts, dim_names, dataset),
        "action_histograms": action_histograms(draws, experts, dim_names, dataset),
        "error_heatmap": error_heatmap(draws, experts, dim_names, dataset),
    }
    return {f"{dataset}/{name}.png": png for name, png in panels.items()}


def drifting_field(
    draws: np.ndarray, experts: np.ndarray, drift: np.ndarray, dataset: str, observations: int = 6
) -> bytes:
    """Drifting field arrows at the draws of a few held-out observations, in a 2-D PCA view.

    Each observation has its own colour: its G draws (dots), its expert chunk (star) and, from
    each draw, the field s·V (the raw field of training, before drift normalization). Arrows
    are scaled by one factor so the longest spans a fifth of the view (stated in the legend); the
    title gives the field's RMS per element, which shrinks as the generator converges.

    Args:
        draws: [n, G, F] flattened chunks. experts: [n, F]. drift: [n, G, F].
    """
    chosen = _spread(len(draws), observations)
    points, g = draws[chosen], draws.shape[1]  # [k, G, F]
    mean, axes, explained = _pca(
        np.concatenate([points.reshape(-1, points.shape[-1]), experts[chosen]])
    )
    starts = _project(points.reshape(-1, points.shape[-1]), mean, axes).reshape(-1, g, 2)
    arrows = _project(draws[chosen] + drift[chosen], mean, axes).reshape(-1, g, 2) - starts
    view = np.ptp(np.concatenate([starts.reshape(-1, 2), _project(experts[chosen], mean, axes)]), 0)
    longest = np.linalg.norm(arrows, axis=-1).max()
    factor = 0.2 * view.max() / longest if longest > 0 else 1.0
    figure, axis = plt.subplots(figsize=(7, 6))
    for color, i in enumerate(chosen):
        c = f"C{color % 10}"
        start = starts[color]  # [G, 2]
        axis.scatter(*start.T, s=18, color=c, alpha=0.8)
        axis.quiver(
            *start.T,
            *(factor * arrows[color]).T,
            color=c,
            angles="xy",
            scale_units="xy",
            scale=1,
            width=0.004,
        )
        expert = _project(experts[i][None], mean, axes)
        axis.scatter(*expert.T, marker="*", s=260, color=c, edgecolor="black")
    _include(axis, (starts + factor * arrows).reshape(-1, 2))
    rms = np.sqrt((drift[chosen] ** 2).mean())
    axis.legend(
        handles=[
            Line2D([], [], marker="o", ls="", color="gray", label=f"policy draw ({g} per obs.)"),
            Line2D(
                [], [], marker="*", ls="", color="gray", mec="black", ms=13, label="expert chunk"
            ),
            Line2D([], [], color="gray", label=f"field s·V × {factor:.3g}"),
        ],
        loc="best",
        fontsize=8,
    )
    _pca_labels(axis, explained)
    axis.set_title(
        f"{dataset}: drifting field at the draws of {len(chosen)} held-out observations\n"
        f"(one colour per observation; field RMS {rms:.3g} per element, normalized units)"
    )
    return _png(figure)


def sample_transport(
    draws: np.ndarray, experts: np.ndarray, dataset: str, observations: int = 24
) -> bytes:
    """Lines from each draw to its nearest expert chunk, in a 2-D PCA view.

    The nearest expert is searched among every held-out expert chunk of the dataset, by distance
    in the full chunk space (not in the 2-D view). A line is green when that nearest chunk is the
    draw's own observation's expert chunk. Orange near green = converged. Lines are drawn for the
    draws of `observations` spread observations; the title's figures cover every draw.

    Args:
        draws: [n, G, F] flattened chunks. experts: [n, F].
    """
    n, g = draws.shape[:2]
    flat = draws.reshape(n * g, -1)  # [n·G, F]
    sq = np.maximum(
        (flat**2).sum(1)[:, None] + (experts**2).sum(1)[None] - 2 * flat @ experts.T, 0.0
    )  # [n·G, n]
    nearest = sq.argmin(axis=1)
    own = nearest == np.repeat(np.arange(n), g)
    rms = np.sqrt(sq[np.arange(n * g), nearest] / flat.shape[1])
    chosen = _spread(n, observations)
    shown = (chosen[:, None] * g + np.arange(g)).ravel()  # draws of the observations drawn
    mean, axes, explained = _pca(np.concatenate([flat[shown], experts]))
    start, end = _project(flat[shown], mean, axes), _project(experts[nearest[shown]], mean, axes)
    figure, axis = plt.subplots(figsize=(7, 6))
    segments = np.stack([start, end], axis=1)  # [k·G, 2, 2]
    axis.add_collection(
        LineCollection(
            segments,
            colors=np.where(own[shown], EXPERT, "0.6"),
            linewidths=0.8,
            alpha=0.7,
            zorder=1,
        )
    )
    axis.scatter(
        *_project(experts, mean, axes).T,
        s=14,
        color=EXPERT,
        label="expert chunks (all held-out)",
        zorder=2,
    )
    axis.scatter(*start.T, s=14, color=POLICY, label=f"policy draws ({len(chosen)} obs.)", zorder=3)
    axis.plot([], [], color=EXPERT, label="→ nearest = own expert chunk")
    axis.plot([], [], color="0.6", label="→ nearest = another obs.'s chunk")
    axis.legend(loc="best", fontsize=8)
    _pca_labels(axis, explained)
    axis.set_title(
        f"{dataset}: each draw to its nearest expert chunk (full-space distance)\n"
        f"all {n} obs.: own chunk nearest for {own.mean():.0%} of draws, "
        f"median RMS distance {np.median(rms):.3g}"
    )
    return _png(figure)


def mode_coverage(
    draws: np.ndarray, experts: np.ndarray, dataset: str, max_components: int = 4, seed: int = 0
) -> bytes:
    """How each observation's G draws spread over the modes of the expert actions.

    Definition: the modes are the components of a diagonal GMM fitted to the held-out expert
    chunks of the dataset (all observations, projected on their top two principal axes; k chosen
    by BIC among 1..max_components), so they are modes of the experts' actions across
    observations, not of one observation's conditional distribution, which one demonstration
    per observation cannot reveal. Each draw is assigned to its most responsible component.
    Left: share of expert chunks vs share of draws per mode; matching bars mean the policy covers
    the expert modes in proportion, one tall bar means collapse. Right: per observation (a spread
    subset), the split of its G draws over the modes, beside the mode of its own expert chunk.

    Args:
        draws: [n, G, F] flattened chunks. experts: [n, F].
    """
    n, g = draws.shape[:2]
    mean, axes, _ = _pca(experts)
    gmm = select_diag_gmm(_project(experts, mean, axes), max_components, seed)
    expert_mode = gmm.predict(_project(experts, mean, axes))  # [n]
    draw_mode = gmm.predict(_project(draws.reshape(n * g, -1), mean, axes)).reshape(n, g)
    colors = [MODES[m % len(MODES)] for m in range(len(gmm.weights))]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), width_ratios=[1, 1.4])
    _mode_shares(left, expert_mode, draw_mode, colors)
    _modes_per_observation(right, expert_mode, draw_mode, colors)
    figure.suptitle(f"{dataset}: mode coverage (GMM on expert chunks, PCA-2)")
    figure.tight_layout()
    return _png(figure)


def _mode_shares(
    axis: plt.Axes, expert_mode: np.ndarray, draw_mode: np.ndarray, colors: list[str]
) -> None:
    """Bars: share of expert chunks [n] and of draws [n, G] in each of the k modes."""
    k = len(colors)
    positions = np.arange(k)
    axis.bar(
        positions - 0.2,
        np.bincount(expert_mode, minlength=k) / expert_mode.size,
        0.4,
        color=EXPERT,
        label="expert chunks",
    )
    axis.bar(
        positions + 0.2,
        np.bincount(draw_mode.ravel(), minlength=k) / draw_mode.size,
        0.4,
        color=POLICY,
        label="policy draws",
    )
    axis.set_xticks(positions, [f"mode {m}" for m in positions])
    for label, color in zip(axis.get_xticklabels(), colors, strict=True):
        label.set_color(color)
    axis.set_ylabel("share")
    axis.set_ylim(0, 1.05)
    axis.legend(fontsize=8)
    axis.set_title(f"share per expert mode (k = {k} by BIC)")


def _modes_per_observation(
    axis: plt.Axes, expert_mode: np.ndarray, draw_mode: np.ndarray, colors: list[str]
) -> None:
    """Stacked bars: how a spread subset of observations split their G draws over the modes."""
    n, g = draw_mode.shape
    k = len(colors)
    chosen = _spread(n, 30)
    shares = np.stack([np.bincount(draw_mode[i], minlength=k) / g for i in chosen])  # [c, k]
    rows = np.arange(len(chosen))
    left_edge = np.zeros(len(chosen))
    for m in range(k):
        axis.barh(rows, shares[:, m], left=left_edge, color=colors[m], height=0.8)
        left_edge += shares[:, m]
    axis.scatter(
        np.full(len(chosen), -0.06),
        rows,
        marker="s",
        s=30,
        c=[colors[m] for m in expert_mode[chosen]],
        clip_on=False,
    )
    axis.set_xlim(-0.1, 1.0)
    axis.set_yticks(rows, [str(i) for i in chosen], fontsize=6)
    axis.set_ylabel("held-out observation")
    axis.set_xlabel(f"share of its {g} draws per mode (square: its expert chunk's mode)")
    axis.legend(
        handles=[Patch(color=colors[m], label=f"mode {m}") for m in range(k)],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    same = (draw_mode == expert_mode[:, None]).mean()
    axis.set_title(f"draws in their expert chunk's mode: {same:.0%} (all {n} observations)")


def prediction_scatter(
    draws: np.ndarray, experts: np.ndarray, dim_names: list[str], dataset: str, dims: int = 6
) -> bytes:
    """Policy prediction (mean of the G draws, as the MSE scores it) against the expert, per dim.

    Shows the `dims` active dims where the expert varies most; every chunk step is a point.

    Args:
        draws: [n, G, T, A]. experts: [n, T, A].
    """
    chosen = _varied_dims(experts, dims)
    prediction = draws.mean(axis=1)  # [n, T, A]
    figure, axes = _grid(len(chosen))
    rng = np.random.default_rng(0)
    for axis, j in zip(axes, chosen, strict=False):
        truth, pred = experts[..., j].ravel(), prediction[..., j].ravel()
        keep = rng.permutation(len(truth))[:4000]
        axis.scatter(truth[keep], pred[keep], s=4, alpha=0.4, color=POLICY)
        low, high = min(truth.min(), pred.min()), max(truth.max(), pred.max())
        axis.plot([low, high], [low, high], "k--", linewidth=0.8)
        axis.set_title(f"{dim_names[j]}  (MSE {np.mean((pred - truth) ** 2):.3g})", fontsize=9)
        axis.set_xlabel("expert")
        axis.set_ylabel("policy (mean of draws)")
    figure.suptitle(f"{dataset}: prediction vs ground truth per dim (normalized; diagonal = exact)")
    figure.tight_layout()
    return _png(figure)


def action_histograms(
    draws: np.ndarray, experts: np.ndarray, dim_names: list[str], dataset: str, dims: int = 6
) -> bytes:
    """Marginal distribution per dim of every policy draw vs the expert chunks (overlap = good).

    Args:
        draws: [n, G, T, A]. experts: [n, T, A].
    """
    chosen = _varied_dims(experts, dims)
    figure, axes = _grid(len(chosen))
    for axis, j in zip(axes, chosen, strict=False):
        policy, expert = draws[..., j].ravel(), experts[..., j].ravel()
        bins = np.linspace(
            min(policy.min(), expert.min()), max(policy.max(), expert.max()) + 1e-6, 40
        )
        axis.hist(expert, bins, density=True, color=EXPERT, alpha=0.55, label="expert")
        axis.hist(policy, bins, density=True, color=POLICY, alpha=0.55, label="policy draws")
        axis.set_title(dim_names[j], fontsize=9)
        axis.set_xlabel("action (normalized)")
        axis.set_ylabel("density")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{dataset}: action distribution per dim, all chunk steps")
    figure.tight_layout()
    return _png(figure)


def error_heatmap(
    draws: np.ndarray, experts: np.ndarray, dim_names: list[str], dataset: str
) -> bytes:
    """MSE of the mean draw per chunk step × active dim (dark = high error).

    Args:
        draws: [n, G, T, A]. experts: [n, T, A].
    """
    error = ((draws.mean(axis=1) - experts) ** 2).mean(axis=0)  # [T, A]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.35 * error.shape[1] + 2.5), 5))
    image = axis.imshow(error, aspect="auto", cmap="magma_r", interpolation="nearest")
    figure.colorbar(image, ax=axis, label="MSE (normalized units)")
    axis.set_xticks(np.arange(len(dim_names)), dim_names, rotation=90, fontsize=7)
    axis.set_xlabel("active dim")
    axis.set_ylabel("chunk step")
    axis.set_title(f"{dataset}: held-out error per chunk step and dim")
    return _png(figure)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _pca(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean [F], top two principal axes [2, F] (zero-padded) and their explained variance [2]."""
    mean = points.mean(axis=0)
    _, singular, vt = np.linalg.svd(points - mean, full_matrices=False)
    axes = np.zeros((2, points.shape[1]))
    axes[: min(2, len(vt))] = vt[:2]
    variance = singular**2
    explained = np.zeros(2)
    explained[: min(2, len(variance))] = variance[:2] / max(variance.sum(), 1e-12)
    return mean, axes, explained


def _project(points: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return (points - mean) @ axes.T  # [N, 2]


def _pca_labels(axis: plt.Axes, explained: np.ndarray) -> None:
    axis.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    axis.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")


def _include(axis: plt.Axes, points: np.ndarray) -> None:
    """Widen the axis limits to show `points` [N, 2] (quiver tips are not in the data limits)."""
    axis.update_datalim(points)
    axis.autoscale_view()


def _spread(n: int, count: int) -> np.ndarray:
    """Up to `count` indices spread evenly over 0..n-1 (held-out observations are in time order)."""
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))


def _varied_dims(experts: np.ndarray, count: int) -> np.ndarray:
    """The `count` active dims where the expert's action varies most, in dim order."""
    spread = experts.reshape(-1, experts.shape[-1]).std(axis=0)
    return np.sort(np.argsort(-spread, kind="stable")[:count])


def _grid(panels: int) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(3, panels)
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.ravel()[panels:]:
        axis.remove()
    return figure, list(axes.ravel()[:panels])
