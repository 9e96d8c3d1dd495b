"""Record scripted demonstrations as a LeRobot v3 dataset (the embedded default's data).

Only successful expert episodes are kept; the seeds used are written to
`meta/drifting_kedro.json` so closed-loop evaluation can draw from the disjoint `eval_seeds`.
"""

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from drifting_kedro.sim.base import SimEnv, TaskSpec
from drifting_kedro.sim.experts import Expert, make_expert
from drifting_kedro.sim.registry import make_env, task_spec
from drifting_kedro.sources.lerobot_v3 import LeRobotV3Writer

logger = logging.getLogger(__name__)

SEEDS_META = "meta/drifting_kedro.json"


def demo_seeds(seed: int, n: int) -> list[int]:
    """Seeds for demonstrations: always even, so never one of `eval_seeds` (always odd)."""
    _check_seed_args(seed, n)
    return [2 * (seed + i) for i in range(n)]


def eval_seeds(seed: int, n: int) -> list[int]:
    """Seeds for closed-loop evaluation: always odd, so disjoint from every `demo_seeds`."""
    _check_seed_args(seed, n)
    return [2 * (seed + i) + 1 for i in range(n)]


def _check_seed_args(seed: int, n: int) -> None:
    if seed < 0 or n < 0:
        raise ValueError(f"seed and n must be >= 0, got seed={seed}, n={n}")


@dataclass
class GenerationReport:
    """How the expert fared while recording one dataset."""

    dataset: str
    root: str
    attempts: int
    successes: int
    seconds: float
    seeds: list[int] = field(default_factory=list)  # seeds of the recorded episodes, in order
    failed_seeds: list[int] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return self.attempts - self.successes

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * self.successes / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.dataset}: {self.successes}/{self.attempts} expert episodes succeeded "
            f"({self.success_rate:.0%}), {self.seconds:.1f}s, "
            f"{self.episodes_per_minute:.1f} episodes/min"
        )


@dataclass
class RecordedEpisode:
    """One expert rollout: the frames to write and whether it ended in success."""

    frames: dict[str, np.ndarray]  # feature key -> [T, ...]
    success: bool


def rollout(
    env: SimEnv, expert: Expert, seed: int, steps_after_success: int | None = None
) -> RecordedEpisode:
    """Run the expert from `seed` for the env's full episode length, or until
    `steps_after_success` steps after the task first succeeds.

    Closed-loop evaluation ends an episode at its first success, so a demonstration's frames
    after it teach nothing a rollout needs; a few are kept so the chunks' ends still show the
    hold. Each row pairs the observation with the action taken from it; the episode counts as
    a success only if the last step is (the object is where it belongs at the end).
    """
    if steps_after_success is not None and steps_after_success < 0:
        raise ValueError(f"steps_after_success must be >= 0 or None, got {steps_after_success}")
    spec = env.spec
    observation = env.reset(seed)
    expert.start(env, seed)
    states, actions = [], []
    images: dict[str, list[np.ndarray]] = {key: [] for key in spec.camera_keys}
    success, first_success = False, None
    for step in range(env.max_steps):
        action = np.asarray(expert.act(observation), dtype=np.float32)
        states.append(observation.state)
        actions.append(action)
        for key in spec.camera_keys:
            images[key].append(observation.images[key])
        observation, _, success, _ = env.step(action)
        if success and first_success is None:
            first_success = step
        if first_success is not None and steps_after_success is not None:
            if step - first_success >= steps_after_success:
                break
    frames = {
        "observation.state": np.stack(states).astype(np.float32),  # [T, S]
        "action": np.stack(actions).astype(np.float32),  # [T, A]
        **{key: np.stack(views) for key, views in images.items()},  # [T, H, W, 3] uint8
    }
    return RecordedEpisode(frames=frames, success=bool(success))


_RECORDER: tuple[SimEnv, Expert, int | None] | None = None  # a recording process's own env


def _start_recorder(dataset_name: str, image_size: int, steps_after_success: int | None) -> None:
    global _RECORDER  # noqa: PLW0603 (one env per worker process, built once)
    _RECORDER = (make_env(dataset_name, image_size), make_expert(dataset_name), steps_after_success)


def _record_seed(seed: int) -> RecordedEpisode:
    env, expert, steps_after_success = _RECORDER
    return rollout(env, expert, seed, steps_after_success)


def rollouts(
    recorder: tuple[str, int, int | None], seeds: list[int], workers: int | None = None
) -> Iterator[RecordedEpisode]:
    """The expert episodes of `seeds` in order, simulated by `workers` processes (default: one per
    core, at most 8; 1: in this process). `recorder` is (dataset, image size, steps after
    success). Rendering and physics are single-threaded, so recording on one core would leave
    the others idle; the caller stops whenever it has enough episodes."""
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers < 1:
        raise ValueError(f"recording workers must be >= 1, got {workers}")
    if workers == 1:
        _start_recorder(*recorder)
        try:
            yield from (_record_seed(seed) for seed in seeds)
        finally:
            _RECORDER[0].close()
        return
    # spawn, not fork: the parent may hold GL contexts and logging threads.
    with multiprocessing.get_context("spawn").Pool(workers, _start_recorder, recorder) as pool:
        yield from pool.imap(_record_seed, seeds)


def lerobot_features(spec: TaskSpec, image_size: int, use_videos: bool) -> dict[str, dict]:
    """LeRobot feature spec of a simulated dataset (default columns are the writer's).

    Cameras are PNG images in the data files unless `use_videos`: closed-loop evaluation feeds
    the policy raw renders, and features of AV1-decoded renders (crf 30, lerobot's setting) sit
    half as far from the raw ones as two frames 10 steps apart (transfer cube, small-real).
    """
    features = {
        "observation.state": {
            "dtype": "float32",
            "shape": [len(spec.state_names)],
            "names": list(spec.state_names),
        },
        "action": {
            "dtype": "float32",
            "shape": [len(spec.action_names)],
            "names": list(spec.action_names),
        },
    }
    for key in spec.camera_keys:
        features[key] = {
            "dtype": "video" if use_videos else "image",
            "shape": [image_size, image_size, 3],
            "names": ["height", "width", "channels"],
        }
    return features


@dataclass(frozen=True)
class RecordingConfig:
    """One simulated dataset to record: an entry of `demonstrations` in the parameters."""

    name: str  # a simulated task of drifting_kedro.sim.registry
    root: str  # where the LeRobot v3 dataset is written (and found on later runs)
    num_episodes: int  # successful demonstrations to keep
    seed: int = 0  # first demonstration seed (demo_seeds)
    image_size: int = 96  # rendered camera size
    use_videos: bool = False  # cameras as AV1 video (lossy, lerobot's default) instead of PNG
    steps_after_success: int | None = None  # end each demonstration this long after success

    def __post_init__(self) -> None:
        where = f"demonstrations[{self.name}]"
        if not self.root:
            raise ValueError(f"{where} needs a `root` directory to record into")
        if self.num_episodes < 1:
            raise ValueError(f"{where}.num_episodes must be >= 1, got {self.num_episodes}")
        if self.steps_after_success is not None and self.steps_after_success < 0:
            raise ValueError(
                f"{where}.steps_after_success must be >= 0 or null, got {self.steps_after_success}"
            )

    @property
    def settings(self) -> dict:
        """What the recording is made with, as `record_dataset` and `check_recording` take it."""
        return {
            "num_episodes": self.num_episodes,
            "seed": self.seed,
            "image_size": self.image_size,
            "use_videos": self.use_videos,
            "steps_after_success": self.steps_after_success,
        }


def ensure_recorded(recording: RecordingConfig) -> dict:
    """Record `recording` unless its root already holds it, and describe the dataset.

    A root recorded earlier is reused only if it was made with the same settings, so a changed
    `num_episodes` (or seed, image size...) never trains on the old demonstrations.
    """
    root = Path(recording.root)
    if (root / "meta" / "info.json").exists():
        check_recording(recording.name, root, **recording.settings)
    else:
        logger.info(
            "Recording %d demonstrations of %s into %s",
            recording.num_episodes,
            recording.name,
            root,
        )
        record_dataset(recording.name, root, **recording.settings)
    meta = _recording_meta(root)
    return {
        "root": str(root),
        "episodes": meta["successes"],
        "expert_success_rate": meta["success_rate"],
        **{key: value for key, value in recording.settings.items() if key != "num_episodes"},
    }


def record_dataset(
    dataset_name: str,
    root: str | Path,
    num_episodes: int,
    seed: int = 0,
    *,
    image_size: int = 96,
    use_videos: bool = False,
    steps_after_success: int | None = None,
    max_attempts: int | None = None,
    workers: int | None = None,
) -> GenerationReport:
    """Write `num_episodes` successful expert demonstrations of a simulated task to `root`.

    Episodes are tried on `demo_seeds(seed, max_attempts)` in order; failures are dropped and
    counted. `workers` processes (default: one per core) simulate the episodes while this one
    writes them, in seed order, so the dataset does not depend on the worker count. The dataset
    is written to `<root>.partial` and renamed when complete, so an interrupted run never
    leaves a half dataset that looks finished.
    """
    spec = task_spec(dataset_name)
    max_attempts = _check_recording_target(dataset_name, root, num_episodes, max_attempts)
    root = Path(root)
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        logger.warning("%s: removing the unfinished generation left in %s", dataset_name, partial)
        shutil.rmtree(partial)
    # The writer closes its files on an exception and writes the metadata on a clean exit.
    with LeRobotV3Writer(
        partial,
        repo_id=f"drifting_kedro/{dataset_name}",
        fps=spec.fps,
        features=lerobot_features(spec, image_size, use_videos),
        robot_type=spec.robot_type,
    ) as writer:
        seeds = demo_seeds(seed, max_attempts)
        recorder = (dataset_name, image_size, steps_after_success)
        report = _record_successes(
            writer, spec, rollouts(recorder, seeds, workers), seeds, num_episodes
        )
        report.root = str(root)
    meta = {
        **asdict(report),
        "success_rate": report.success_rate,
        "episodes_per_minute": report.episodes_per_minute,
        "base_seed": seed,
        "image_size": image_size,
        "use_videos": use_videos,
        "steps_after_success": steps_after_success,
        "seed_rule": "demo seeds are even 2*(seed+i); evaluation uses odd eval_seeds",
        "instruction": spec.instruction,
        "simulator": spec.extra.get("simulator", ""),
    }
    (partial / SEEDS_META).write_text(json.dumps(meta, indent=2))
    root.mkdir(parents=True, exist_ok=True)
    root.rmdir()  # the empty placeholder (checked above) gives way to the finished dataset
    partial.rename(root)
    logger.info("%s", report)
    return report


def _check_recording_target(
    dataset_name: str, root: str | Path, num_episodes: int, max_attempts: int | None
) -> int:
    """Fail before any simulation on a bad count or a root holding something; the attempt cap."""
    if num_episodes < 1:
        raise ValueError(f"{dataset_name}: num_episodes must be >= 1, got {num_episodes}")
    max_attempts = 2 * num_episodes + 10 if max_attempts is None else max_attempts
    if max_attempts < num_episodes:
        raise ValueError(
            f"{dataset_name}: max_attempts={max_attempts} is below num_episodes={num_episodes}"
        )
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{dataset_name}: {root} is not empty; choose a new root or delete it first"
        )
    return max_attempts


def _record_successes(
    writer: LeRobotV3Writer,
    spec: TaskSpec,
    episodes: Iterator[RecordedEpisode],
    seeds: list[int],
    num_episodes: int,
) -> GenerationReport:
    """Write the successful episodes, in seed order, until `num_episodes` of them."""
    report = GenerationReport(dataset=spec.name, root="", attempts=0, successes=0, seconds=0.0)
    start = time.perf_counter()
    progress = tqdm(total=num_episodes, desc=spec.name, unit="episode")
    try:
        for episode_seed, episode in zip(seeds, episodes, strict=False):
            report.attempts += 1
            if episode.success:
                writer.add_episode(episode.frames, task=spec.instruction)
                report.successes += 1
                report.seeds.append(episode_seed)
                progress.update(1)
            else:
                report.failed_seeds.append(episode_seed)
                logger.info("%s: expert failed on seed %d, dropped", spec.name, episode_seed)
            progress.set_postfix(success_rate=f"{report.success_rate:.0%}")
            if report.successes == num_episodes:
                break
    finally:
        episodes.close()  # stops the workers, which may be simulating seeds not needed
        progress.close()
    report.seconds = time.perf_counter() - start
    if report.successes < num_episodes:
        raise RuntimeError(
            f"{spec.name}: only {report.successes}/{num_episodes} successful episodes in "
            f"{report.attempts} attempts (expert success {report.success_rate:.0%}): the simulator "
            "behaves unlike the one the expert was written for; compare `pip show gym-aloha "
            "gymnasium-robotics mujoco` with pyproject.toml"
        )
    return report


def _recording_meta(root: str | Path) -> dict:
    path = Path(root) / SEEDS_META
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {root} was not generated by record_dataset")
    return json.loads(path.read_text())


def recorded_seeds(root: str | Path) -> list[int]:
    """Demonstration seeds of a generated dataset, to keep evaluation off them."""
    return list(_recording_meta(root)["seeds"])


def check_recording(
    dataset_name: str,
    root: str | Path,
    *,
    num_episodes: int,
    seed: int,
    image_size: int,
    use_videos: bool,
    steps_after_success: int | None = None,
) -> None:
    """Fail if `root` holds a recording made with other settings than the ones configured.

    A recording is reused as it is, so without this check a changed `num_episodes` (or seed,
    image size, camera storage or episode end) would silently train on the old demonstrations.
    """
    meta = _recording_meta(root)
    recorded_and_configured = {
        "dataset": (meta["dataset"], dataset_name),
        "num_episodes": (meta["successes"], num_episodes),
        "seed": (meta["base_seed"], seed),
        "image_size": (meta["image_size"], image_size),
        # Recordings older than the option stored their cameras as video.
        "use_videos": (meta.get("use_videos", True), use_videos),
        # Recordings older than the option ran every episode to its full length.
        "steps_after_success": (meta.get("steps_after_success"), steps_after_success),
    }
    differ = [
        f"{key}={was} (configured {wanted})"
        for key, (was, wanted) in recorded_and_configured.items()
        if was != wanted
    ]
    if differ:
        raise ValueError(
            f"{dataset_name}: {root} was recorded with {', '.join(differ)}; give its "
            "`demonstrations` entry a new root, or delete this one to record it again"
        )
