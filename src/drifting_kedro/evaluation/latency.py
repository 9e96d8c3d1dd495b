"""Latency of one policy call (backbone + generator), median after warm-up."""

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from drifting_kedro.evaluation.policy import InferencePolicy
from drifting_kedro.evaluation.threads import torch_threads
from drifting_kedro.model import DriftingPolicy
from drifting_kedro.sim.base import Observation


def median_latency_ms(
    call: Callable[[], object], repeats: int, threads: int, warmup: int = 2
) -> float:
    """Median wall time of `call` in milliseconds with `threads` torch threads."""
    if repeats < 1:
        raise ValueError(f"evaluate.latency.repeats must be >= 1, got {repeats}")
    with torch_threads(threads):
        for _ in range(warmup):
            call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def compare_latency(
    policy: InferencePolicy,
    dataset: str,
    observation: Observation,
    baseline_steps: list[int],
    repeats: int,
) -> dict[str, float]:
    """One policy call, drifting (1 step) beside a diffusion head at each K, 1 and all threads.

    The variants share the policy's backbone and network size; latency does not depend on the
    weights, so an untrained head of the same configuration stands in for the head the policy
    was not trained with (drifting, for a baseline checkpoint).
    Returns `<generator>/threads<n>` in ms and `<baseline>_vs_drifting/threads<n>` ratios.
    """
    config = policy.model.config

    def variant(head: str, steps: int, noise_dim: int) -> InferencePolicy:
        return InferencePolicy(
            DriftingPolicy(replace(config, head=head, noise_dim=noise_dim)),
            policy.stats,
            policy.backbone,
            image_size=policy.image_size,
            num_steps=steps,
            device=policy.device,
        )

    drifting = policy if config.head == "drifting" else variant("drifting", 1, config.noise_dim)
    variants = {"drifting_1step": drifting}
    for steps in baseline_steps:
        variants[f"diffusion_{steps}step"] = variant("diffusion", steps, config.action_dim)
    results = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        for name, variant in variants.items():
            results[f"{name}/threads{threads}"] = median_latency_ms(
                lambda v=variant: v.predict_chunk(
                    dataset, observation.images, observation.instruction, observation.state
                ),
                repeats,
                threads,
            )
        base = results[f"drifting_1step/threads{threads}"]
        for name in variants:
            if name != "drifting_1step":
                results[f"{name}_vs_drifting/threads{threads}"] = (
                    results[f"{name}/threads{threads}"] / base
                )
    return results
