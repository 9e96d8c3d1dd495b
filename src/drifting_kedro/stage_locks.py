"""Hooks: one `kedro run` at a time writes a stage's shared, unversioned files under `data/`.

Each node of a locked stage runs under `data/.locks/<stage>.lock`. A second run reaching that
stage waits, logging the lock file and the pid and command holding it; with
DRIFTING_KEDRO_LOCK_TIMEOUT=<seconds> it stops after that long instead (0: at once).
"""

from collections import Counter
from pathlib import Path

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Node

from drifting_kedro.locking import DataLock, lock_timeout_from_env

# They rewrite files in place (frame stores, recorded demonstrations, the episode and unified
# tables, the feature staging cache, reports); normalization and train only add new versions.
LOCKED_STAGES = ("ingest", "action_mapping", "features", "evaluate")


def stage_of(node: Node) -> str | None:
    """The locked stage a node belongs to (its function's `pipelines/<stage>/` package)."""
    parts = node.func.__module__.split(".")
    if parts[:2] == ["drifting_kedro", "pipelines"] and len(parts) > 2:
        return parts[2] if parts[2] in LOCKED_STAGES else None
    return None


class StageLockHooks:
    def __init__(self) -> None:
        self._data_dir = Path("data")
        self._locks: dict[str, DataLock] = {}
        self._running: Counter[str] = Counter()  # nodes of each stage running in this process

    @hook_impl
    def before_pipeline_run(self, run_params: dict) -> None:
        self._data_dir = Path(run_params.get("project_path") or ".") / "data"

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        stage = stage_of(node)
        if stage is None:
            return
        if stage not in self._locks:
            path = self._data_dir / ".locks" / f"{stage}.lock"
            self._locks[stage] = DataLock(path, timeout=lock_timeout_from_env())
        self._locks[stage].acquire()
        self._running[stage] += 1

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        self._done(node)

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        self._done(node)

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release_all()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release_all()

    def _done(self, node: Node) -> None:
        stage = stage_of(node)
        if stage is None or self._running[stage] == 0:
            return
        self._running[stage] -= 1
        if self._running[stage] == 0:
            self._locks[stage].release()

    def _release_all(self) -> None:
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()
        self._running.clear()
