"""ChunkExecutor: open-loop chunks between re-plans, and ACT temporal ensembling; a seeded
closed-loop episode replays exactly, alone or beside others; rollouts run at the configured
torch thread count."""

import math

import numpy as np
import pytest
import torch
from policy_helpers import tiny_checkpoint

from drifting_kedro.evaluation import rollouts
from drifting_kedro.evaluation.policy import InferencePolicy
from drifting_kedro.evaluation.rollouts import (
    ChunkExecutor,
    EpisodeResult,
    evaluate_closed_loop,
    run_episodes,
    wilson_interval,
)
from drifting_kedro.evaluation.threads import torch_threads
from drifting_kedro.features.backbone import build_backbone
from drifting_kedro.sim import make_env


class CountingPredictor:
    """Chunk number c holds 10·c + j at step j of the chunk (1-D actions), so every action
    tells which prediction and which chunk step it came from."""

    def __init__(self, horizon: int) -> None:
        self.horizon, self.calls = horizon, []

    def __call__(self, observation) -> np.ndarray:
        c = len(self.calls)
        self.calls.append(observation)
        return (10.0 * c + np.arange(self.horizon, dtype=float))[:, None]  # [T, 1]


def _act(executor: ChunkExecutor, predict, step: int, observation) -> float:
    if executor.needs_chunk(step):
        executor.add_chunk(step, predict(observation))
    return executor.action(step)[0]


def test_replanning_every_k_steps_executes_each_chunk_open_loop():
    predict = CountingPredictor(horizon=5)
    executor = ChunkExecutor(horizon=5, replan_every=3, temporal_ensemble=False)
    actions = [_act(executor, predict, step, f"obs{step}") for step in range(8)]
    assert predict.calls == ["obs0", "obs3", "obs6"]  # a new chunk only every 3 steps
    assert actions == [0, 1, 2, 10, 11, 12, 20, 21]


def test_temporal_ensembling_averages_every_prediction_for_a_step_with_exp_weights():
    decay = 0.5
    predict = CountingPredictor(horizon=3)
    executor = ChunkExecutor(horizon=3, replan_every=1, temporal_ensemble=True, decay=decay)
    actions = [_act(executor, predict, step, None) for step in range(4)]
    assert len(predict.calls) == 4  # a chunk every step
    w0, w1, w2 = 1.0, math.exp(-decay), math.exp(-2 * decay)  # oldest prediction first
    assert actions[0] == pytest.approx(0.0)
    assert actions[1] == pytest.approx((w0 * 1 + w1 * 10) / (w0 + w1))
    # step 2: chunk 0 at its step 2, chunk 1 at step 1, chunk 2 at step 0
    assert actions[2] == pytest.approx((w0 * 2 + w1 * 11 + w2 * 20) / (w0 + w1 + w2))
    # step 3: chunk 0 has run out (horizon 3); chunks 1, 2, 3 remain
    assert actions[3] == pytest.approx((w0 * 12 + w1 * 21 + w2 * 30) / (w0 + w1 + w2))


def test_replan_period_outside_the_horizon_is_rejected():
    with pytest.raises(ValueError, match="replan_every"):
        ChunkExecutor(horizon=4, replan_every=5, temporal_ensemble=False)


@pytest.fixture(scope="module")
def fetch_policy() -> InferencePolicy:
    """An untrained tiny policy whose chunks depend on noise and observation."""
    backbone = build_backbone("small-real")
    checkpoint = tiny_checkpoint("fetch_pick_and_place", backbone.hidden_size, horizon=10)
    return InferencePolicy.from_checkpoint(checkpoint, backbone, image_size=96)


def _fetch_episodes(policy: InferencePolicy, seeds: list[int]):
    return run_episodes(
        policy,
        "fetch_pick_and_place",
        seeds,
        image_size=96,
        replan_every=1,
        temporal_ensemble=True,
        record=len(seeds),
    )


def _fetch_episode(policy: InferencePolicy, seed: int):
    return _fetch_episodes(policy, [seed])[0]


def test_a_seeded_episode_replays_exactly(fetch_policy):
    first, again = _fetch_episode(fetch_policy, 3), _fetch_episode(fetch_policy, 3)
    assert (first.length, first.reward, first.stage) == (again.length, again.reward, again.stage)
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, again.frames, strict=True))
    other = _fetch_episode(fetch_policy, 5)  # another scene and other noise draws
    assert not np.array_equal(first.frames[-1], other.frames[-1])


def test_episodes_stepped_side_by_side_are_the_episodes_run_alone(fetch_policy):
    """Batched policy calls, but each episode's own scene and noise draws."""
    together = _fetch_episodes(fetch_policy, [3, 5, 7])
    for result in together:
        alone = _fetch_episode(fetch_policy, result.seed)
        assert (result.length, result.stage) == (alone.length, alone.stage)
        assert result.reward == pytest.approx(alone.reward, abs=1e-6)
        # The same images up to the float rounding of batched matmuls (edge pixels).
        for a, b in zip(result.frames, alone.frames, strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5


def test_a_batched_policy_call_draws_each_chunk_from_its_own_generator(fetch_policy):
    env = make_env("fetch_pick_and_place", image_size=96)
    try:
        observations = [env.reset(seed) for seed in (1, 3)]
    finally:
        env.close()
    batch = fetch_policy.predict_batch(
        "fetch_pick_and_place",
        observations,
        [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)],
    )
    assert batch.shape == (2, 10, 4)
    for obs, seed, chunk in zip(observations, (11, 12), batch, strict=True):
        alone = fetch_policy.predict_chunk(
            "fetch_pick_and_place", obs.images, obs.instruction, obs.state,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        np.testing.assert_allclose(chunk, alone, atol=1e-5)
    with pytest.raises(ValueError, match="one generator per observation"):
        fetch_policy.predict_batch("fetch_pick_and_place", observations, [torch.Generator()])


def test_rollouts_run_at_the_configured_thread_count_and_restore_it(monkeypatch):
    seen = []

    def record_threads(policy, dataset, seeds, **options):
        seen.append(torch.get_num_threads())
        return [EpisodeResult(seed=s, success=True, reward=1.0, length=1, stage=3) for s in seeds]

    monkeypatch.setattr(rollouts, "run_episodes", record_threads)
    outside = torch.get_num_threads()
    with torch_threads(2):
        metrics, _ = evaluate_closed_loop(
            None, "fetch_pick_and_place", [1, 3], image_size=96, replan_every=1,
            temporal_ensemble=True, videos=0, threads=1, parallel_envs=1,
        )  # fmt: skip
        assert torch.get_num_threads() == 2
    assert seen == [1, 1]  # one call per group of parallel_envs episodes
    assert metrics["success_rate"] == 1.0
    assert metrics["success_ci95_low"] == pytest.approx(0.3424, abs=1e-4)  # 2/2 proves little
    assert metrics["success_ci95_high"] == 1.0
    assert torch.get_num_threads() == outside


@pytest.mark.parametrize("count", [0, -2, 1.5])
def test_a_thread_count_that_is_not_a_positive_integer_is_rejected(count):
    with pytest.raises(ValueError, match="thread count"), torch_threads(count):
        pass


def test_wilson_interval_matches_the_formula_and_stays_in_the_unit_interval():
    assert wilson_interval(35, 50) == pytest.approx((0.5625, 0.8090), abs=1e-4)
    assert wilson_interval(19, 50) == pytest.approx((0.2586, 0.5185), abs=1e-4)  # scipy binomtest
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and high == pytest.approx(0.0714, abs=1e-4)
    assert wilson_interval(50, 50)[1] == 1.0
    for successes in range(0, 21):
        low, high = wilson_interval(successes, 20)
        assert 0 <= low <= successes / 20 <= high <= 1
    with pytest.raises(ValueError, match="got 3/2"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="no seeds to roll out"):
        evaluate_closed_loop(
            None, "fetch_push", [], image_size=96, replan_every=1, temporal_ensemble=True,
            videos=0,
        )  # fmt: skip


def test_draws_of_one_observation_differ_and_a_single_chunk_is_the_first_draw(fetch_policy):
    env = make_env("fetch_pick_and_place", image_size=96)
    try:
        obs = env.reset(1)
    finally:
        env.close()
    observation = ("fetch_pick_and_place", obs.images, obs.instruction, obs.state)
    draws = fetch_policy.predict_chunks(
        *observation, num_samples=3, generator=torch.Generator().manual_seed(0)
    )
    assert draws.shape == (3, 10, 4)  # [G, T, native action width]
    assert not np.allclose(draws[0], draws[1])
    single = fetch_policy.predict_chunk(*observation, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(single, draws[0], atol=1e-5)  # the same noise, batched matmuls
