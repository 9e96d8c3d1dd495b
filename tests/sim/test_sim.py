"""Simulated envs, scripted experts and the demonstration recorder."""

import json
from dataclasses import replace

import numpy as np
import pytest

from drifting_kedro.sim import (
    SIM_TASKS,
    demo_seeds,
    eval_seeds,
    make_env,
    make_expert,
    record_dataset,
    recorded_seeds,
)
from drifting_kedro.sim.record import RecordingConfig, ensure_recorded, rollout
from drifting_kedro.sources import SourceConfig, iter_source_episodes

STATE_WIDTH = {
    "aloha_sim_transfer_cube": 14,
    "aloha_sim_insertion": 14,
    "fetch_pick_and_place": 4,
    "fetch_push": 4,
    "fetch_pick_and_place_abs": 4,
    "robosuite_lift": 8,
    "robosuite_can": 8,
    "maniskill_pick_cube": 8,
    "maniskill_stack_cube": 8,
}


@pytest.mark.parametrize("name", sorted(STATE_WIDTH))
def test_wrapper_round_trips_one_step(envs, name):
    env = envs(name)
    observation = env.reset(seed=1)
    action = make_expert(name)
    action.start(env, 1)
    observation, reward, success, done = env.step(action.act(observation))
    keys = SIM_TASKS[name].camera_keys
    assert sorted(observation.images) == sorted(keys)
    for key in keys:
        assert observation.images[key].shape == (32, 32, 3)
        assert observation.images[key].dtype == np.uint8
        assert observation.images[key].std() > 0  # a rendered scene, not a blank buffer
    if len(keys) > 1:  # each camera shows the scene from its own side
        assert not np.array_equal(observation.images[keys[0]], observation.images[keys[1]])
    assert observation.state.shape == (STATE_WIDTH[name],)
    assert observation.state.dtype == np.float32
    assert observation.instruction == SIM_TASKS[name].instruction
    assert isinstance(reward, float) and not success and not done


@pytest.mark.parametrize("name", ["fetch_push", "aloha_sim_insertion"])
def test_same_seed_same_episode(envs, name):
    env = envs(name)
    first = env.reset(seed=3)
    zero = np.zeros(len(SIM_TASKS[name].action_names), dtype=np.float32)
    if name.startswith("aloha"):
        zero = first.state.copy()  # hold the start pose
    after_first = env.step(zero)[0]
    second = env.reset(seed=3)
    after_second = env.step(zero)[0]
    other = env.reset(seed=5)
    np.testing.assert_array_equal(first.state, second.state)
    np.testing.assert_array_equal(after_first.state, after_second.state)
    for key in first.images:
        np.testing.assert_array_equal(after_first.images[key], after_second.images[key])
        assert not np.array_equal(first.images[key], other.images[key])  # objects moved


def test_bad_actions_and_names_are_named(envs):
    env = envs("fetch_push")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"fetch_push: action must have shape \(4,\)"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="unknown simulated dataset 'nope'"):
        make_env("nope")


def test_step_limit_is_enforced():
    env = make_env("fetch_pick_and_place", image_size=16, max_steps=2)
    env.reset(seed=0)
    assert not env.step(np.zeros(4))[3]
    assert env.step(np.zeros(4))[3]
    with pytest.raises(RuntimeError, match="max_steps=2"):
        env.step(np.zeros(4))
    env.close()


def test_absolute_action_becomes_clipped_delta(envs):
    env = envs("fetch_pick_and_place_abs")
    env.reset(seed=0)
    grip = env.grip_position
    delta = env.delta_action(np.array([*(grip + [0.01, -1.0, 0.0]), 0.5]))
    np.testing.assert_allclose(delta, [0.2, -1.0, 0.0, 0.5], atol=1e-9)


def test_demo_and_eval_seeds_are_disjoint():
    demos = set(demo_seeds(0, 500)) | set(demo_seeds(7, 500))
    evals = set(eval_seeds(0, 500)) | set(eval_seeds(3, 500))
    assert len(demo_seeds(4, 10)) == 10 and not demos & evals
    with pytest.raises(ValueError, match="seed=-1"):
        demo_seeds(-1, 3)


@pytest.mark.parametrize(
    ("name", "seeds"),
    [
        ("fetch_pick_and_place", (0, 2, 4)),
        ("fetch_push", (0, 2)),
        ("aloha_sim_transfer_cube", (0,)),
    ],
)
def test_expert_succeeds_on_fixed_seeds(envs, name, seeds):
    env, expert = envs(name), make_expert(name)
    for seed in seeds:
        assert rollout(env, expert, seed).success, f"{name} expert failed on seed {seed}"


@pytest.mark.parametrize(
    ("name", "order"),
    [
        ("fetch_pick_and_place", [1, 2, 3]),  # reach, move the block, place it
        ("aloha_sim_transfer_cube", [1, 2, 4]),  # touch, lift, then the hand-over holds at once
    ],
)
def test_expert_reaches_the_stages_in_order(expert_episode, name, order):
    episode = expert_episode(name)
    assert episode.success and episode.order == order


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "seeds"),
    [
        ("aloha_sim_transfer_cube", (2, 4, 6)),
        ("aloha_sim_insertion", (2, 4, 6)),
        ("fetch_pick_and_place_abs", (0, 2, 4)),
    ],
)
def test_expert_succeeds_on_more_seeds(envs, name, seeds):
    env, expert = envs(name), make_expert(name)
    for seed in seeds:
        assert rollout(env, expert, seed).success, f"{name} expert failed on seed {seed}"


def test_insertion_expert_keeps_the_peg_on_the_pin(envs):
    """Seed 0 only grazed the pin with ACT's stopping point; the pressed peg must stay on it."""
    env, expert = envs("aloha_sim_insertion"), make_expert("aloha_sim_insertion")
    observation = env.reset(0)
    expert.start(env, 0)
    rewards, success = [], False
    for _ in range(env.max_steps):
        observation, reward, success, _ = env.step(expert.act(observation))
        rewards.append(reward)
    pin_touched = np.array(rewards[-40:]) == 4  # gym-aloha's insertion reward: 4 = peg on pin
    assert success, f"insertion expert failed on seed 0 (last rewards {rewards[-5:]})"
    assert pin_touched.mean() >= 0.9, f"peg on the pin in {pin_touched.sum()}/40 final steps"


def test_expert_replays_identically(envs):
    env, expert = envs("fetch_push"), make_expert("fetch_push")
    first, second = rollout(env, expert, 6), rollout(env, expert, 6)
    for key, value in first.frames.items():
        np.testing.assert_array_equal(value, second.frames[key])


def _check_generated(root, name, num_episodes, length):
    from drifting_kedro.sources.lerobot_v3 import open_dataset

    dataset = open_dataset(root, dataset=name)
    assert dataset.num_episodes == num_episodes
    assert dataset.fps == SIM_TASKS[name].fps
    assert dataset.camera_keys == list(SIM_TASKS[name].camera_keys)
    episodes = list(dataset.iter_episodes())
    for episode in episodes:
        assert episode.dataset == name
        assert episode.language == SIM_TASKS[name].instruction
        assert episode.length == length
        assert episode.state.shape == (length, STATE_WIDTH[name])
        assert np.isfinite(episode.action).all()
        assert sorted(episode.images) == sorted(SIM_TASKS[name].camera_keys)
        for frames in episode.images.values():
            assert frames.shape[0] == length and frames.dtype == np.uint8
    return episodes


def test_record_dataset_writes_successful_episodes(tmp_path):
    root = tmp_path / "fetch"
    report = record_dataset("fetch_pick_and_place", root, num_episodes=2, seed=0, image_size=32)
    assert report.successes == 2 and report.attempts >= 2
    assert report.episodes_per_minute > 0
    episodes = _check_generated(root, "fetch_pick_and_place", 2, 50)
    assert not np.array_equal(episodes[0].action, episodes[1].action)
    assert recorded_seeds(root) == report.seeds == [0, 2]
    meta = json.loads((root / "meta" / "drifting_kedro.json").read_text())
    assert meta["base_seed"] == 0 and meta["image_size"] == 32
    assert not (tmp_path / "fetch.partial").exists()
    with pytest.raises(FileExistsError, match="not empty"):
        record_dataset("fetch_pick_and_place", root, num_episodes=1)


def test_recording_workers_write_the_dataset_one_process_writes(tmp_path):
    """Episodes are simulated in parallel but written in seed order: the same dataset."""
    from drifting_kedro.sources.lerobot_v3 import open_dataset

    recorded = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        report = record_dataset(
            "fetch_pick_and_place_abs", root, num_episodes=3, image_size=32,
            steps_after_success=1, workers=workers,
        )  # fmt: skip
        assert report.seeds == [0, 2, 4]
        recorded[workers] = list(
            open_dataset(root, dataset="fetch_pick_and_place_abs").iter_episodes()
        )
    for one, two in zip(recorded[1], recorded[2], strict=True):
        np.testing.assert_array_equal(one.action, two.action)
        for key, frames in one.images.items():
            np.testing.assert_array_equal(frames, two.images[key])
    with pytest.raises(ValueError, match="recording workers must be >= 1"):
        record_dataset("fetch_pick_and_place_abs", tmp_path / "none", num_episodes=1, workers=0)


def test_changed_recording_settings_are_an_error_not_stale_data(tmp_path):
    root = tmp_path / "fetch"
    recording = RecordingConfig(
        name="fetch_pick_and_place", root=str(root), num_episodes=1, seed=3, image_size=32
    )
    recorded = ensure_recorded(recording)
    assert recorded["root"] == str(root) and recorded["episodes"] == 1
    assert ensure_recorded(recording) == recorded  # the second time reuses the recording
    source = SourceConfig(name="fetch_pick_and_place", kind="lerobot_v3", root=str(root))
    assert [e.episode_index for e in iter_source_episodes(source)] == [0]
    with pytest.raises(ValueError, match=r"num_episodes=1 \(configured 5\); give its `demon"):
        ensure_recorded(replace(recording, num_episodes=5))
    with pytest.raises(ValueError, match=r"seed=3 \(configured 0\), image_size=32 \(conf"):
        ensure_recorded(replace(recording, seed=0, image_size=96))
    with pytest.raises(ValueError, match=r"dataset=fetch_pick_and_place \(configured fetch_p"):
        ensure_recorded(replace(recording, name="fetch_push"))
    with pytest.raises(ValueError, match=r"use_videos=False \(configured True\)"):
        ensure_recorded(replace(recording, use_videos=True))
    with pytest.raises(ValueError, match=r"steps_after_success=None \(configured 3\)"):
        ensure_recorded(replace(recording, steps_after_success=3))


def test_a_demonstration_ends_the_given_steps_after_its_first_success(envs):
    env, expert = envs("fetch_pick_and_place_abs"), make_expert("fetch_pick_and_place_abs")
    full = rollout(env, expert, 4)
    assert full.frames["action"].shape[0] == 50 and full.success
    short = rollout(env, expert, 4, steps_after_success=2)
    length = short.frames["action"].shape[0]
    assert short.success and 3 <= length < 50
    # The same episode, cut: its first frames are the full one's.
    for key, frames in short.frames.items():
        np.testing.assert_array_equal(frames, full.frames[key][:length])
    # Success came at step length - 3 (0-based), and not before.
    first = rollout(env, expert, 4, steps_after_success=0)
    assert first.frames["action"].shape[0] == length - 2
    with pytest.raises(ValueError, match="steps_after_success must be >= 0"):
        rollout(env, expert, 4, steps_after_success=-1)
    with pytest.raises(ValueError, match=r"demonstrations\[fetch_pick_and_place_abs\].steps_afte"):
        RecordingConfig(
            name="fetch_pick_and_place_abs", root="x", num_episodes=1, steps_after_success=-1
        )


def test_recorded_cameras_are_the_renders_the_policy_sees_unless_videos_are_asked_for(
    tmp_path, envs
):
    """PNG frames are the rollout's renders bit for bit; AV1 video (lerobot's default) is not."""
    name, seed = "fetch_pick_and_place", 0
    rendered = rollout(envs(name), make_expert(name), seed).frames
    for use_videos in (False, True):
        root = tmp_path / f"videos_{use_videos}"
        record_dataset(name, root, num_episodes=1, seed=seed, image_size=32, use_videos=use_videos)
        info = json.loads((root / "meta" / "info.json").read_text())
        (episode,) = _check_generated(root, name, 1, 50)
        for key in SIM_TASKS[name].camera_keys:
            assert info["features"][key]["dtype"] == ("video" if use_videos else "image")
            same = np.array_equal(episode.images[key], rendered[key])
            assert same != use_videos, (key, use_videos)


def test_record_dataset_gives_up_after_max_attempts(tmp_path):
    with pytest.raises(ValueError, match="max_attempts=1 is below num_episodes=2"):
        record_dataset("fetch_push", tmp_path / "x", num_episodes=2, max_attempts=1)


@pytest.mark.slow
def test_record_aloha_dataset(tmp_path):
    root = tmp_path / "aloha"
    report = record_dataset("aloha_sim_transfer_cube", root, num_episodes=1, seed=5)
    assert report.seeds == [10]
    (episode,) = _check_generated(root, "aloha_sim_transfer_cube", 1, 400)
    assert episode.images["observation.images.top"].shape == (400, 96, 96, 3)


@pytest.mark.parametrize("name", ["robosuite_lift", "maniskill_pick_cube"])
def test_panda_tasks_record_as_lerobot_v3(tmp_path, name):
    """The robosuite and ManiSkill wrappers record through the same recorder and reader."""
    from drifting_kedro.sources.lerobot_v3 import open_dataset

    root = tmp_path / name
    report = record_dataset(name, root, num_episodes=1, seed=0, image_size=32)
    assert report.successes == 1
    length = next(open_dataset(root, dataset=name).iter_episodes()).length
    assert 1 < length <= SIM_TASKS[name].max_steps
    (episode,) = _check_generated(root, name, 1, length)
    np.testing.assert_allclose(np.linalg.norm(episode.action[:, 3:7], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(episode.state[:, 3:7], axis=1), 1.0, atol=1e-4)
    assert ((episode.action[:, 7] >= 0) & (episode.action[:, 7] <= 1)).all()
