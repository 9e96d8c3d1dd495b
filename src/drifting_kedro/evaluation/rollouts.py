"""Closed-loop rollouts of an inference policy in the simulator its data came from."""

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from drifting_kedro.evaluation.policy import InferencePolicy
from drifting_kedro.evaluation.threads import torch_threads
from drifting_kedro.sim.registry import make_env, task_spec

logger = logging.getLogger(__name__)


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    reward: float
    length: int
    stage: int = 0  # the furthest of the task's stages reached
    frames: list[np.ndarray] = field(default_factory=list)  # camera frames when recorded


class ChunkExecutor:
    """One native action per control step from chunk predictions.

    Without ensembling, a chunk is predicted every `replan_every` steps and executed open loop.
    With temporal ensembling (ACT), a chunk is predicted every step and the action for step t is
    the average of every prediction made for t, weighted exp(-decay * age index), oldest first.
    The caller asks `needs_chunk`, predicts (for many episodes at once), then `add_chunk`s.
    """

    def __init__(
        self, horizon: int, replan_every: int, temporal_ensemble: bool, decay: float = 0.01
    ) -> None:
        if not 1 <= replan_every <= horizon:
            raise ValueError(
                f"evaluate.closed_loop.replan_every must be in [1, horizon={horizon}], "
                f"got {replan_every}"
            )
        self.horizon, self.replan_every = horizon, replan_every
        self.temporal_ensemble, self.decay = temporal_ensemble, decay
        self.plans: list[tuple[int, np.ndarray]] = []  # (start step, chunk [T, A])

    def needs_chunk(self, step: int) -> bool:
        return self.temporal_ensemble or step % self.replan_every == 0 or not self.plans

    def add_chunk(self, step: int, chunk: np.ndarray) -> None:
        if self.temporal_ensemble:
            self.plans = [(s, c) for s, c in self.plans if step - s < self.horizon]
            self.plans.append((step, chunk))
        else:
            self.plans = [(step, chunk)]

    def action(self, step: int) -> np.ndarray:
        actions = np.stack([chunk[step - start] for start, chunk in self.plans])
        weights = np.exp(-self.decay * np.arange(len(actions)))
        return (weights[:, None] * actions).sum(0) / weights.sum()


def run_episodes(
    policy: InferencePolicy,
    dataset: str,
    seeds: list[int],
    *,
    image_size: int,
    replan_every: int,
    temporal_ensemble: bool,
    record: int = 0,
) -> list[EpisodeResult]:
    """Seeded episodes stepped side by side, each until success or the task's step limit.

    Every control step, the episodes that need a chunk are predicted in one batched policy call
    (one backbone and one generator pass instead of one per episode). The seed fixes the scene
    and the policy's noise draws, which come from the episode's own generator: an episode's
    outcome does not depend on the others in the batch. The first `record` episodes keep their
    camera frames.
    """
    envs, executors, generators, observations = [], [], [], []
    results = [EpisodeResult(seed=seed, success=False, reward=0.0, length=0) for seed in seeds]
    try:
        for seed in seeds:
            envs.append(make_env(dataset, image_size=image_size))
            observations.append(envs[-1].reset(seed))
            executors.append(ChunkExecutor(policy.horizon, replan_every, temporal_ensemble))
            generators.append(torch.Generator(device=policy.device).manual_seed(seed))
        running = list(range(len(seeds)))
        while running:
            asking = [i for i in running if executors[i].needs_chunk(results[i].length)]
            if asking:
                chunks = policy.predict_batch(
                    dataset, [observations[i] for i in asking], [generators[i] for i in asking]
                )
                for i, chunk in zip(asking, chunks, strict=True):
                    executors[i].add_chunk(results[i].length, chunk)
            still_running = []
            for i in running:
                result = results[i]
                if i < record:
                    images = observations[i].images
                    result.frames.append(
                        np.concatenate([images[key] for key in sorted(images)], axis=1)
                    )
                observations[i], reward, success, done = envs[i].step(
                    executors[i].action(result.length)
                )
                result.reward += float(reward)
                result.length += 1
                result.success = result.success or bool(success)
                result.stage = max(result.stage, envs[i].stage())
                if not done:
                    still_running.append(i)
            running = still_running
        return results
    finally:
        for env in envs:
            env.close()


def wilson_interval(successes: int, episodes: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate over `episodes` seeded episodes.

    50 episodes leave a wide interval (35/50: 56-81 %); reported beside the rate so two runs are
    not told apart by a difference their seeds alone explain. Unlike rate ± z·se, it stays in
    [0, 1] and is not empty at 0/n or n/n.
    """
    if episodes < 1 or not 0 <= successes <= episodes:
        raise ValueError(
            f"need 0 <= successes <= episodes, episodes >= 1; got {successes}/{episodes}"
        )
    rate = successes / episodes
    shrink = 1 + z**2 / episodes
    centre = (rate + z**2 / (2 * episodes)) / shrink
    half = z * math.sqrt(rate * (1 - rate) / episodes + z**2 / (4 * episodes**2)) / shrink
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate_closed_loop(
    policy: InferencePolicy,
    dataset: str,
    seeds: list[int],
    *,
    image_size: int,
    replan_every: int,
    temporal_ensemble: bool,
    videos: int,
    threads: int | None = None,
    parallel_envs: int = 1,
) -> tuple[dict[str, float], list[EpisodeResult]]:
    """Success rate, mean reward, episode length and, per stage of the task before success, the
    fraction of episodes that got that far (`stage_<name>`); the first `videos` episodes keep
    their frames. `threads` fixes torch's thread count for the rollouts (None: as it is);
    `parallel_envs` episodes are stepped side by side (`run_episodes`)."""
    if not seeds:
        raise ValueError(f"{dataset}: no seeds to roll out (evaluate.closed_loop.episodes >= 1)")
    if parallel_envs < 1:
        raise ValueError(f"evaluate.closed_loop.parallel_envs must be >= 1, got {parallel_envs}")
    results: list[EpisodeResult] = []
    with (
        torch_threads(threads),
        tqdm(total=len(seeds), desc=f"rollouts {dataset}", unit="episode") as progress,
    ):
        for first in range(0, len(seeds), parallel_envs):
            results += run_episodes(
                policy,
                dataset,
                seeds[first : first + parallel_envs],
                image_size=image_size,
                replan_every=replan_every,
                temporal_ensemble=temporal_ensemble,
                record=max(0, videos - first),
            )
            progress.update(len(results) - progress.n)
    successes = sum(r.success for r in results)
    low, high = wilson_interval(successes, len(results))
    metrics = {
        "success_rate": successes / len(results),
        "success_ci95_low": low,
        "success_ci95_high": high,
        "mean_reward": float(np.mean([r.reward for r in results])),
        "mean_length": float(np.mean([r.length for r in results])),
        "episodes": float(len(results)),
    }
    for number, name in enumerate(task_spec(dataset).stages[:-1], start=1):  # last: success
        metrics[f"stage_{name}"] = float(np.mean([r.stage >= number for r in results]))
    logger.info("closed loop %s: %s", dataset, metrics)
    return metrics, results
