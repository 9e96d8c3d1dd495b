"""Nodes of the evaluate stage: offline metrics, closed-loop rollouts, latency, the summary, and
the policy registered as an MLflow model."""

import logging

import numpy as np
import pandas as pd

from drifting_kedro.evaluation import plots
from drifting_kedro.evaluation.latency import compare_latency
from drifting_kedro.evaluation.offline import OfflineDraws, offline_metrics
from drifting_kedro.evaluation.policy import InferencePolicy, load_policy_model
from drifting_kedro.evaluation.rollouts import evaluate_closed_loop
from drifting_kedro.features.backbone import Backbone, build_backbone
from drifting_kedro.normalization import DatasetStats
from drifting_kedro.serving import ServingConfig, log_policy
from drifting_kedro.sim.record import eval_seeds
from drifting_kedro.sim.registry import make_env, task_spec
from drifting_kedro.sources.video import encode_episode_video, pick_video_codec
from drifting_kedro.training.checkpoint import load_run_checkpoint, self_contained
from drifting_kedro.training.data import PolicySamples
from drifting_kedro.training.online import backbone_from_checkpoint

logger = logging.getLogger(__name__)


def evaluate_offline(
    policy_checkpoint: dict,
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
    checkpoint = _evaluated_checkpoint(policy_checkpoint, evaluate_options)
    model = load_policy_model(checkpoint, evaluate_options["use_ema"])
    stats = DatasetStats.from_dict(checkpoint["norm_stats"])
    samples = PolicySamples(held_out, stats, vlm_features, model.config.action_horizon)
    options = evaluate_options["offline"]
    return offline_metrics(
        model,
        samples,
        generations=options["generations"],
        max_samples=options["max_samples"],
        num_steps=_sampling_steps(checkpoint, evaluate_options),
    )


def evaluate_in_simulation(
    policy_checkpoint: dict,
    demonstrations: list[dict],
    ingest_options: dict,
    features_options: dict,
    evaluate_options: dict,
) -> tuple[dict[str, dict[str, float]], dict[str, bytes]]:
    """Success rate over seeded episodes, disjoint from the demonstrations, in the simulator of
    each recorded dataset (`demonstrations`).

    Returns:
        Metrics per dataset and the first episodes' videos (mp4 bytes by file name).
    """
    policy = _inference_policy(
        _evaluated_checkpoint(policy_checkpoint, evaluate_options),
        ingest_options,
        features_options,
        evaluate_options,
    )
    options = evaluate_options["closed_loop"]
    results, videos = {}, {}
    codec = pick_video_codec("libx264")
    for source in _simulated_datasets(demonstrations):
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
    demonstrations: list[dict],
    ingest_options: dict,
    features_options: dict,
    evaluate_options: dict,
) -> dict[str, float]:
    """Median latency of one policy call, drifting vs K-step diffusion, 1 and all threads."""
    policy = _inference_policy(
        _evaluated_checkpoint(policy_checkpoint, evaluate_options),
        ingest_options,
        features_options,
        evaluate_options,
    )
    source = _simulated_datasets(demonstrations)[0]
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


def register_policy(
    policy_checkpoint: dict,
    closed_loop: dict[str, dict[str, float]],
    ingest_options: dict,
    features_options: dict,
    evaluate_options: dict,
) -> None:
    """Log the evaluated policy as an MLflow model into this run and register it
    (`evaluate.register_model.name`), its version tagged with the closed-loop results."""
    options = evaluate_options["register_model"]
    if not options["enabled"]:
        logger.info("evaluate.register_model.enabled is false: the policy is not registered")
        return
    checkpoint = _evaluated_checkpoint(policy_checkpoint, evaluate_options)
    config = ServingConfig(
        image_size=int(ingest_options["image_size"]),
        use_ema=evaluate_options["use_ema"],
        num_steps=_sampling_steps(checkpoint, evaluate_options),
    )
    log_policy(
        checkpoint,
        _backbone(checkpoint, features_options),
        config,
        registered_name=options["name"],
        closed_loop=closed_loop,
    )


def _evaluated_checkpoint(policy_checkpoint: dict, evaluate_options: dict) -> dict:
    """The catalog's `policy_checkpoint`, or the kept `step_<N>.pt` that `evaluate.checkpoint`
    names; either with the statistics and registry rows it was trained on."""
    if not evaluate_options["checkpoint"]:
        return self_contained(policy_checkpoint, "policy_checkpoint")
    logger.info("evaluating %s instead of policy_checkpoint", evaluate_options["checkpoint"])
    return load_run_checkpoint(evaluate_options["checkpoint"])


def _simulated_datasets(demonstrations: list[dict]) -> list[dict]:
    if not demonstrations:
        raise ValueError("closed-loop evaluation needs a simulated dataset under demonstrations")
    return demonstrations


def _sampling_steps(checkpoint: dict, evaluate_options: dict) -> int:
    """1 for the drifting head; `evaluate.sampling_steps` (K) for a diffusion / flow baseline."""
    if checkpoint["model_config"]["head"] == "drifting":
        return 1
    return int(evaluate_options["sampling_steps"])


def _backbone(checkpoint: dict, features_options: dict) -> Backbone:
    # An online-VLM checkpoint carries its backbone (with the trained LoRA adapters).
    if "online_vlm" in checkpoint:
        return backbone_from_checkpoint(checkpoint)
    # The features' own backbone options (a local model_path, small-real's image_stride).
    return build_backbone(
        features_options["backbone"], **features_options.get("backbone_options", {})
    )


def _inference_policy(
    checkpoint: dict, ingest_options: dict, features_options: dict, evaluate_options: dict
) -> InferencePolicy:
    return InferencePolicy.from_checkpoint(
        checkpoint,
        _backbone(checkpoint, features_options),
        image_size=int(ingest_options["image_size"]),
        use_ema=evaluate_options["use_ema"],
        num_steps=_sampling_steps(checkpoint, evaluate_options),
    )
