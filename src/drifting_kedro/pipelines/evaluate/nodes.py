"""Nodes of the evaluate stage: offline metrics, closed-loop rollouts, latency, the summary."""

import logging

import numpy as np
import pandas as pd

from drifting_kedro.evaluation import plots
from drifting_kedro.evaluation.latency import compare_latency
from drifting_kedro.evaluation.offline import OfflineDraws, offline_metrics
from drifting_kedro.evaluation.policy import InferencePolicy, load_policy_model
from drifting_kedro.evaluation.rollouts import evaluate_closed_loop
from drifting_kedro.features.backbone import build_backbone
from drifting_kedro.normalization import DatasetStats
from drifting_kedro.sim.record import eval_seeds
from drifting_kedro.sim.registry import make_env, task_spec
from drifting_kedro.sources.video import encode_episode_video, pick_video_codec
from drifting_kedro.training.checkpoint import load_run_checkpoint
from drifting_kedro.training.data import PolicySamples
from drifting_kedro.training.online import backbone_from_checkpoint

logger = logging.getLogger(__name__)


def select_checkpoint(
    policy_checkpoint: dict, norm_stats: dict, evaluate_options: dict
) -> tuple[dict, dict]:
    """The checkpoint every evaluate node scores, and the statistics it was trained on.

    Returns:
        The catalog's `policy_checkpoint` and `norm_stats`, or, when `evaluate.checkpoint` names
        a kept `step_<N>.pt`, that file and its own run's statistics.
    """
    if not evaluate_options["checkpoint"]:
        return policy_checkpoint, norm_stats
    logger.info("evaluating %s instead of policy_checkpoint", evaluate_options["checkpoint"])
    return load_run_checkpoint(evaluate_options["checkpoint"])


def evaluate_offline(
    policy_checkpoint: dict,
    norm_stats: dict,
    unified_actions: pd.DataFrame,
    vlm_features: dict[str, str],
    evaluate_options: dict,
) -> tuple[dict[str, float], pd.DataFrame, dict[str, OfflineDraws]]:
    """Masked MSE, MMD², GMM entropy and λ_V on the held-out episodes.

    Returns:
        Metrics keyed `<dataset>/<metric>`, the per-dim MSE table and the draws per dataset.
    """
    held_out = unified_actions[unified_actions["split"] == "val"]
    if held_out.empty:
        raise ValueError("no held-out episodes for offline metrics: raise ingest.val_fraction")
    model = load_policy_model(policy_checkpoint, evaluate_options["use_ema"])
    samples = PolicySamples(
        held_out, DatasetStats.from_dict(norm_stats), vlm_features, model.config.action_horizon
    )
    options = evaluate_options["offline"]
    return offline_metrics(
        model,
        samples,
        generations=options["generations"],
        max_samples=options["max_samples"],
        num_steps=_sampling_steps(policy_checkpoint, evaluate_options),
    )


def evaluate_in_simulation(
    policy_checkpoint: dict,
    norm_stats: dict,
    ingest_options: dict,
    features_options: dict,
    evaluate_options: dict,
) -> tuple[dict[str, dict[str, float]], dict[str, bytes]]:
    """Success rate over seeded episodes (disjoint from the demonstrations) per simulated source.

    Returns:
        Metrics per dataset and the first episodes' videos (mp4 bytes by file name).
    """
    policy = _inference_policy(
        policy_checkpoint, norm_stats, ingest_options, features_options, evaluate_options
    )
    options = evaluate_options["closed_loop"]
    results, videos = {}, {}
    codec = pick_video_codec("libx264")
    for source in _simulated_sources(ingest_options):
        seeds = eval_seeds(source["seed"], options["episodes"])
        results[source["name"]], episodes = evaluate_closed_loop(
            policy,
            source["name"],
            seeds,
            image_size=source.get("image_size", 96),
            replan_every=options["replan_every"],
            temporal_ensemble=options["temporal_ensemble"],
            videos=options["videos"],
            threads=options["threads"],
            parallel_envs=options["parallel_envs"],
        )
        fps = task_spec(source["name"]).fps
        for episode in episodes[: options["videos"]]:
            outcome = "success" if episode.success else "failure"
            videos[f"{source['name']}_seed{episode.seed}_{outcome}.mp4"] = encode_episode_video(
                np.stack(episode.frames), fps, codec
            )
    return results, videos


def measure_latency(
    policy_checkpoint: dict,
    norm_stats: dict,
    ingest_options: dict,
    features_options: dict,
    evaluate_options: dict,
) -> dict[str, float]:
    """Median latency of one policy call, drifting vs K-step diffusion, 1 and all threads."""
    policy = _inference_policy(
        policy_checkpoint, norm_stats, ingest_options, features_options, evaluate_options
    )
    source = _simulated_sources(ingest_options)[0]
    env = make_env(source["name"], image_size=source.get("image_size", 96))
    try:
        observation = env.reset(eval_seeds(source["seed"], 1)[0])
    finally:
        env.close()
    options = evaluate_options["latency"]
    return compare_latency(
        policy, source["name"], observation, options["baseline_steps"], options["repeats"]
    )


def summarize_evaluation(
    offline: dict[str, float],
    per_dim_mse: pd.DataFrame,
    offline_draws: dict[str, OfflineDraws],
    closed_loop: dict[str, dict[str, float]],
    latency: dict[str, float],
) -> tuple[dict[str, dict], pd.DataFrame, dict[str, bytes]]:
    """One place that turns every evaluation result into MLflow metrics, a table and plots.

    Returns:
        MLflow metrics, the dataset × metric summary table and PNG panels by file name
        (`<dataset>/<panel>.png` for the offline panels of each dataset).
    """
    per_dataset = dict(offline)
    for name, values in closed_loop.items():
        per_dataset.update({f"{name}/{key}": value for key, value in values.items()})
    rows = [(*key.split("/", 1), value) for key, value in per_dataset.items()]
    summary = (
        pd.DataFrame(rows, columns=["dataset", "metric", "value"])
        .pivot_table(index="dataset", columns="metric", values="value")
        .reset_index()
    )
    figures = {
        "per_dim_error_radar.png": plots.per_dim_error_radar(per_dim_mse),
        "success_rate.png": plots.success_rates(closed_loop),
        "latency.png": plots.latency_bars({k: v for k, v in latency.items() if "_vs_" not in k}),
    }
    for name, kept in offline_draws.items():
        figures.update(
            plots.dataset_panels(name, kept.draws, kept.experts, kept.drift, kept.dim_names)
        )
    logger.info("evaluation summary:\n%s", summary.to_string(index=False))
    metrics = {**per_dataset, **{f"latency_ms/{key}": value for key, value in latency.items()}}
    return (
        {key: {"value": float(value), "step": 0} for key, value in metrics.items()},
        summary,
        figures,
    )


def _simulated_sources(ingest_options: dict) -> list[dict]:
    sources = [s for s in ingest_options["sources"] if s["kind"] == "sim"]
    if not sources:
        raise ValueError("closed-loop evaluation needs a simulated source in ingest.sources")
    return sources


def _sampling_steps(policy_checkpoint: dict, evaluate_options: dict) -> int:
    """1 for the drifting head; `evaluate.sampling_steps` (K) for a diffusion / flow baseline."""
    if policy_checkpoint["model_config"]["head"] == "drifting":
        return 1
    return int(evaluate_options["sampling_steps"])


def _inference_policy(
    policy_checkpoint, norm_stats, ingest_options, features_options, evaluate_options
) -> InferencePolicy:
    # An online-VLM checkpoint carries its backbone (with the trained LoRA adapters).
    if "online_vlm" in policy_checkpoint:
        backbone = backbone_from_checkpoint(policy_checkpoint)
    else:
        # The features' own backbone options (a local model_path, small-real's image_stride).
        backbone = build_backbone(
            features_options["backbone"], **features_options.get("backbone_options", {})
        )
    return InferencePolicy.from_checkpoint(
        policy_checkpoint,
        DatasetStats.from_dict(norm_stats),
        backbone,
        image_size=int(ingest_options["image_size"]),
        use_ema=evaluate_options["use_ema"],
        num_steps=_sampling_steps(policy_checkpoint, evaluate_options),
    )
