"""Safe writes to the shared data folder: one writer per stage, files replaced in one rename.

Two `kedro run`s in one project share `data/`. A stage that rewrites unversioned files (frame
stores, `episodes.parquet`, reports) holds an exclusive `flock` on `data/.locks/<stage>.lock`
while it runs, so a second run waits for it (or stops, naming the holder) instead of truncating
files the first is writing. Every such file is written under a temporary name and renamed over
the old one, so a reader sees the old file or the new one, never half of either.
"""

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_ENV = "DRIFTING_KEDRO_LOCK_TIMEOUT"
_POLL_SECONDS = 0.2


class DataLockTimeout(TimeoutError):
    """Another process holds a stage's lock; the message names the lock file and the holder."""


def lock_timeout_from_env() -> float | None:
    """Seconds to wait for a held lock, from DRIFTING_KEDRO_LOCK_TIMEOUT (unset: no limit)."""
    text = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(
            f"{LOCK_TIMEOUT_ENV}={text!r} must be a number of seconds >= 0 (0: stop at once "
            "when another run holds a stage; unset: wait for it)"
        )
    return seconds


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class DataLock:
    """An exclusive lock on one file, held until `release()` or the holder's exit (even a kill).

    The lock file is never deleted (two processes would then lock different files); the holder
    writes its pid and command into it, so whoever waits can say who holds it.
    """

    def __init__(self, path: str | os.PathLike, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout  # seconds to wait for another holder; None: no limit, 0: none
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """Who holds the lock, as its holder recorded it."""
        try:
            record = json.loads(self.path.read_text())
            return f"pid {record['pid']} ({record['command']}, since {record['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process (it has not recorded its pid yet)"

    def _busy(self) -> str:
        return (
            f"{self.path} is held by {self.holder()}: another run is writing the same files in "
            "this data folder"
        )

    def acquire(self) -> None:
        """Take the lock: at once if free, else wait (logging who holds it) or raise."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                self._wait(fd)
            program = Path(sys.argv[0])  # `python -m kedro` runs .../kedro/__main__.py
            name = program.parent.name if program.name == "__main__.py" else program.name
            record = {
                "pid": os.getpid(),
                "command": " ".join([name, *sys.argv[1:]]),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except BaseException:
            os.close(fd)  # closing drops the lock if it was taken
            raise
        self._fd = fd

    def _wait(self, fd: int) -> None:
        if self.timeout == 0:
            raise DataLockTimeout(
                f"{self._busy()}. Wait for it to finish (unset {LOCK_TIMEOUT_ENV} to wait "
                "automatically), or stop it if it hangs."
            )
        logger.warning("%s; waiting for it to finish", self._busy())
        start = time.monotonic()
        while not _try_lock(fd):
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise DataLockTimeout(
                    f"gave up after {self.timeout:g} s ({LOCK_TIMEOUT_ENV}): {self._busy()}"
                )
            time.sleep(_POLL_SECONDS)
        logger.info("%s is free after %.0f s; going on", self.path, time.monotonic() - start)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DataLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A hidden, unique name next to `path` (same file system, so a rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_pid(temporary: Path) -> int | None:
    """The pid a `temporary_sibling` name carries (None for any other file)."""
    pid = temporary.name.removesuffix(".tmp").rsplit(".", 1)[-1].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _remove_if_writer_died(temporaries: Iterable[Path]) -> None:
    for temporary in temporaries:
        pid = _writer_pid(temporary)
        if pid is not None and not _alive(pid):
            _remove(temporary)


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete temporary siblings of `path` left by killed writers (their pid no longer runs)."""
    path = Path(path)
    _remove_if_writer_died(path.parent.glob(f".{path.name}.*.tmp"))


def remove_stale_temporaries_in(directory: str | os.PathLike) -> None:
    """Delete every temporary file in `directory` whose writer was killed before its rename."""
    _remove_if_writer_died(Path(directory).glob(".*.tmp"))


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name to write `path`'s new content to; on success rename it over `path`.

    On an error the temporary file is deleted and `path` keeps its old content. A folder is
    swapped in two renames (the old one is moved aside, then deleted), never left half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        if temporary.is_dir() and path.exists():
            old = temporary_sibling(path)
            os.rename(path, old)
            try:
                os.rename(temporary, path)
            except BaseException:
                os.rename(old, path)
                raise
            _remove(old)
        else:
            os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
