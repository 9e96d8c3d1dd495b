"""Checkpoints: written atomically with a sha256 sidecar, verified, read with `weights_only=True`.

`<name>.pt.sha256` holds the digest of `<name>.pt` in `sha256sum` format (so `sha256sum -c` checks
it by hand). While a file is replaced the sidecar lists the new and the previous digests, so a crash
at any point leaves a checkpoint that verifies. A checkpoint written before checksums existed has
no sidecar: it still loads, with a warning.

Every checkpoint the trainer writes is self-contained: besides weights and configuration it holds
the normalization statistics (`norm_stats`, the json dict) and the registry rows (`datasets`) of
the datasets it was trained on, so it is evaluated or served with exactly what it was trained on,
whatever the catalog or the run folder hold later.
"""

import hashlib
import json
import logging
import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from drifting_kedro.action_space import get_spec
from drifting_kedro.locking import temporary_sibling

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
# What torch.load raises on a truncated or garbled file (never FileNotFoundError: checked first).
UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError)


# Registry fields that decide what a policy sees and where its outputs go in the native action.
MAPPING_FIELDS = ("action_indices", "state_indices", "embodiment", "quat_active", "cameras")


class CorruptCheckpointError(ValueError):
    """A checkpoint that is truncated, unreadable, or not the bytes its sidecar recorded."""


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, and why each newer one was passed over."""

    path: Path
    state: dict
    skipped: list[str]  # why each checkpoint passed over is corrupt, one message each


def checksum_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, rename, record its sha256: never a
    torn checkpoint, and a later change to its bytes is caught on load."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        torch.save(state, tmp)
        _commit(tmp, path, _sha256(tmp))
    finally:
        tmp.unlink(missing_ok=True)


def copy_checkpoint(source: Path, target: Path) -> None:
    """Copy atomically (e.g. `last.pt` to `step_<N>.pt`), checking the bytes read on the way."""
    tmp = temporary_sibling(target)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as reader, tmp.open("wb") as writer:
            for block in iter(lambda: reader.read(CHUNK), b""):
                digest.update(block)
                writer.write(block)
        recorded = _recorded(checksum_path(source))
        if recorded and digest.hexdigest() not in recorded:
            raise CorruptCheckpointError(_mismatch(source, digest.hexdigest()))
        _commit(tmp, target, digest.hexdigest())
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> dict:
    """Verify a checkpoint against its sidecar, then load it without unpickling arbitrary objects.

    Raises:
        FileNotFoundError: no such file.
        CorruptCheckpointError: truncated, unreadable or changed since it was written.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    recorded = _recorded(checksum_path(path))
    if recorded:
        digest = _sha256(path)
        if digest not in recorded:
            raise CorruptCheckpointError(_mismatch(path, digest))
    else:
        logger.warning("Checkpoint %s has no %s: loading it unverified", path, checksum_path(path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except UNREADABLE as error:
        raise _unreadable(path, error) from error


def latest_intact_checkpoint(
    directory: Path, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> ResumePoint | None:
    """The highest-step checkpoint of a run that verifies: `last.pt`, `final.pt` or `step_<N>.pt`.

    Returns None when the run has no checkpoint yet.

    Raises:
        CorruptCheckpointError: checkpoints exist but none is intact.
    """
    names = [directory / "last.pt", directory / "final.pt", *directory.glob("step_*.pt")]
    steps, skipped = {}, []
    for path in filter(Path.is_file, names):
        try:
            steps[path] = _peek_step(path)
        except CorruptCheckpointError as error:
            skipped.append(str(error))
    for path in sorted(steps, key=steps.get, reverse=True):  # stable: last.pt first at a tie
        try:
            return ResumePoint(path, load_checkpoint(path, map_location, mmap=mmap), skipped)
        except CorruptCheckpointError as error:
            skipped.append(str(error))
    if skipped:
        raise CorruptCheckpointError(
            f"no intact checkpoint in {directory} to resume from: " + "; ".join(skipped)
        )
    return None


def load_run_checkpoint(path: Path) -> dict:
    """A kept checkpoint file (`evaluate.checkpoint`), self-contained (see `self_contained`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} is not a file; a training run keeps checkpoints/step_<N>.pt "
            "every train.trainer.keep_every steps"
        )
    return self_contained(load_checkpoint(path), path)


def registry_rows(dataset_names: list[str]) -> dict[str, dict]:
    """The registry row of each dataset as plain json values (loadable with weights_only)."""
    return {name: json.loads(json.dumps(asdict(get_spec(name)))) for name in dataset_names}


def check_registry_rows(rows: dict[str, dict]) -> None:
    """Fail when today's registry maps a dataset differently from the row a policy was trained
    with: its actions would be read from, and written to, the wrong native dims."""
    today = registry_rows(list(rows))
    for name, row in rows.items():
        changed = [key for key in MAPPING_FIELDS if row[key] != today[name][key]]
        if changed:
            details = "; ".join(f"{key} was {row[key]}, is {today[name][key]}" for key in changed)
            raise ValueError(
                f"dataset {name!r} is mapped differently since the policy was trained "
                f"({details}): train it again on the current registry"
            )


def self_contained(checkpoint: dict, source: str | Path) -> dict:
    """`checkpoint` with the normalization statistics and registry rows it was trained on.

    A checkpoint written before they were stored inside it gets them from its run folder's
    `norm_stats.json` (the run's own copy, never rewritten) and today's registry, with a warning.

    Raises:
        FileNotFoundError: an old checkpoint whose run folder no longer holds its statistics.
    """
    if "norm_stats" in checkpoint:
        return checkpoint
    stats_path = Path(checkpoint["train_config"]["stats_path"])
    if not stats_path.is_file():
        raise FileNotFoundError(
            f"checkpoint {source} was written before checkpoints carried their normalization "
            f"statistics, and its run's {stats_path} no longer exists: train a new one "
            "(kedro run --pipelines=train), whose checkpoints carry their own"
        )
    logger.warning(
        "checkpoint %s was written before checkpoints carried their normalization statistics and "
        "registry rows: using its run's %s and today's registry",
        source, stats_path,
    )  # fmt: skip
    return {
        **checkpoint,
        "norm_stats": json.loads(stats_path.read_text()),
        "datasets": registry_rows(checkpoint["dataset_names"]),
    }


def _commit(tmp: Path, path: Path, digest: str) -> None:
    """Make `tmp` durable, then swap it in while the sidecar accepts both the old and new file."""
    _fsync(tmp)
    sidecar = checksum_path(path)
    previous = _recorded(sidecar) or ([_sha256(path)] if path.exists() else [])
    _write_atomic(sidecar, [digest, *previous], path.name)
    os.replace(tmp, path)
    _write_atomic(sidecar, [digest], path.name)
    _fsync(path.parent)


def _write_atomic(sidecar: Path, digests: list[str], name: str) -> None:
    tmp = temporary_sibling(sidecar)
    tmp.write_text("".join(f"{digest}  {name}\n" for digest in dict.fromkeys(digests)))
    _fsync(tmp)
    os.replace(tmp, sidecar)


def _recorded(sidecar: Path) -> list[str]:
    if not sidecar.is_file():
        return []
    return [line.split()[0] for line in sidecar.read_text().splitlines() if line.strip()]


def _mismatch(path: Path, digest: str) -> str:
    return (
        f"checkpoint {path} is corrupt: its sha256 {digest[:16]}... is not the one recorded in "
        f"{checksum_path(path).name} when it was written"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _peek_step(path: Path) -> int:
    """The step a checkpoint says it holds, read without its tensors (memory-mapped)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except UNREADABLE as error:
        raise _unreadable(path, error) from error


def _unreadable(path: Path, error: Exception) -> CorruptCheckpointError:
    reason = str(error).strip().splitlines()[0]
    return CorruptCheckpointError(
        f"checkpoint {path} cannot be read, it is truncated or not a checkpoint ({reason})"
    )
