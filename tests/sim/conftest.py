"""Fixtures of the simulator tests: environments opened once per module, expert episodes."""

from types import SimpleNamespace

import pytest

from drifting_kedro.sim import make_env, make_expert


@pytest.fixture(scope="module")
def envs(request):
    """name -> that task's env, opened on first use at the module's IMAGE_SIZE (default 32)."""
    image_size = getattr(request.module, "IMAGE_SIZE", 32)
    opened = {}
    yield lambda name: opened.setdefault(name, make_env(name, image_size=image_size))
    for env in opened.values():
        env.close()


@pytest.fixture
def expert_episode(envs):
    """Runs the task's expert on one seeded episode until done; returns its env, expert, first
    and last observation, last reward, success and `order`: the stages reached, each at its first
    appearance."""

    def run(name: str, seed: int = 0):
        env, expert = envs(name), make_expert(name)
        first = observation = env.reset(seed=seed)
        expert.start(env, seed)
        assert env.stage() == 0, f"{name}: a stage is met before the first step"
        stages, reward, success = [], 0.0, False
        for _ in range(env.max_steps):
            observation, reward, success, done = env.step(expert.act(observation))
            stages.append(env.stage())
            if done:
                break
        assert stages[-1] == len(env.spec.stages) or not success, f"{name}: stages {stages}"
        order = list(dict.fromkeys(stage for stage in stages if stage))
        return SimpleNamespace(
            env=env,
            expert=expert,
            first=first,
            observation=observation,
            reward=reward,
            success=success,
            order=order,
        )

    return run
