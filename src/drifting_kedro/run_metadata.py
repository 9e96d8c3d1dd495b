"""What a run is, in words a person can tell apart: its name, its code and its dataset versions.

kedro-mlflow names every MLflow run after its pipeline, so each `kedro run` showed up as
`__default__`. Here a run is named by what it does (pipeline, env, and the policy it trains or
evaluates), the commit its code came from is read from git, and every dataset it used gets a
version (location, episode and frame counts, digest), so comparing two runs shows what changed.
Only facts are gathered here; `tracking.MlflowRunLogger` writes them into the run.
"""

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

SEPARATOR = " · "
UNKNOWN = "unknown"  # a fact that cannot be read, e.g. the commit outside a git checkout
DIGEST_LENGTH = 8  # MLflow's own dataset digests are 8 hex characters
GIT_TIMEOUT_S = 10.0


def pipeline_label(pipeline_names: list[str] | None) -> str:
    """The pipelines a `kedro run` ran; `default` for Kedro's `__default__`."""
    names = pipeline_names or ["__default__"]
    return "+".join("default" if name == "__default__" else name for name in names)


def policy_label(head: str, steps: int) -> str:
    """A policy by its generator head and training length, e.g. `drifting · 2000 steps`."""
    return f"{head}{SEPARATOR}{steps} steps"


def run_name(pipeline: str, env: str, *details: str) -> str:
    """E.g. `default · smoke · drifting · 20 steps` or `precompute · local`."""
    return SEPARATOR.join([pipeline, env, *details])


def checkpoint_facts(checkpoint: dict) -> tuple[str, dict[str, str]]:
    """A checkpoint's policy label and the tags naming the training run it came from.

    The run folder a checkpoint was trained in is named after that training's MLflow run id.
    """
    config, step = checkpoint["train_config"], int(checkpoint["step"])
    tags = {"checkpoint.run": Path(config["run_dir"]).name, "checkpoint.step": str(step)}
    return policy_label(config["head"], step), tags


def peek_checkpoint(path: Path) -> dict:
    """A checkpoint file's configuration and step; its tensors are memory-mapped, never read."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def git_tags(project_path: Path) -> dict[str, str]:
    """The commit the code ran at and whether the work tree had changes not in it.

    Both are `unknown` outside a git checkout or without git: a run never fails on them.
    """
    commit = _git(project_path, "rev-parse", "HEAD")
    changes = _git(project_path, "status", "--porcelain") if commit else None
    return {
        "git.commit": commit or UNKNOWN,
        "git.dirty": UNKNOWN if changes is None else str(bool(changes)).lower(),
    }


def _git(cwd: Path, *args: str) -> str | None:
    """`git <args>`'s output in `cwd`, or None when git is missing or fails there."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass(frozen=True)
class DatasetVersion:
    """One dataset as a run used it."""

    name: str  # registry name
    location: str  # local root or hub repo id, as configured
    on_hub: bool  # `location` is a hub repo id
    episodes: int  # as ingest read them (after `max_episodes` and skips)
    frames: int
    digest: str


def configured_sources(parameters: dict) -> list[dict]:
    """Every configured dataset: the recorded `demonstrations` and the `ingest.sources`."""
    ingest = parameters.get("ingest") or {}
    return [*(parameters.get("demonstrations") or []), *(ingest.get("sources") or [])]


def dataset_versions(
    sources: list[dict], manifest: dict[str, dict], project_path: Path
) -> list[DatasetVersion]:
    """The version of every dataset ingest read, located through its configured entry.

    Args:
        sources: the configured datasets (`demonstrations` and `ingest.sources` entries), each
            with a `name` and a `root` or a `repo_id`.
        manifest: ingest's frame-store manifest, `dataset -> {episodes, frames, ...}`.
        project_path: what relative roots are relative to.

    Returns:
        One version per manifest entry; a dataset no longer configured has location `unknown`.
    """
    configured = {entry["name"]: entry for entry in sources}
    versions = []
    for name, entry in manifest.items():
        source = configured.get(name, {})
        root = source.get("root")
        location = root or source.get("repo_id") or UNKNOWN
        episodes, frames = int(entry["episodes"]), int(entry["frames"])
        digest = lerobot_meta_digest(project_path / root) if root else None
        if digest is None:
            digest = _digest([json.dumps([location, episodes, frames]).encode()])
        versions.append(
            DatasetVersion(
                name=name,
                location=location,
                on_hub=not root and location != UNKNOWN,
                episodes=episodes,
                frames=frames,
                digest=digest,
            )
        )
    return versions


def lerobot_meta_digest(root: Path) -> str | None:
    """A digest of a LeRobot v3 root's `meta/` files, or None when it has no `meta/info.json`.

    The metadata lists every episode with its length, task, file offsets and statistics, so it
    changes whenever the data does, and it stays small where the data and videos are large (those
    are never read). Roots of other formats (RLBench, DexGraspNet) and hub ids get None: their
    digest covers only the location and counts.
    """
    meta = root / "meta"
    if not (meta / "info.json").is_file():
        return None
    files = sorted(path for path in meta.rglob("*") if path.is_file())
    return _digest(
        part
        for path in files
        for part in (path.relative_to(root).as_posix().encode(), path.read_bytes())
    )


def _digest(parts) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "little"))  # length-prefixed: parts never run together
        sha.update(part)
    return sha.hexdigest()[:DIGEST_LENGTH]
