"""Builds and runs `torchrun` commands: the one way anything that scales is launched.

Training and feature precompute both run as Python modules under PyTorch's elastic launcher, so
the same command scales from one CPU process to many nodes (`--nnodes`, `--rdzv-endpoint`).
torchrun runs in a session of its own and never outlives the call: an exception or Ctrl-C in the
launching process stops its whole process group. The caller's pid goes to the ranks in
DRIFTING_KEDRO_LAUNCHER_PID, so they can stop when it is gone (the trainer does).
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The ranks stop when the process with this pid (the one calling `run_torchrun`) is gone.
LAUNCHER_PID_ENV = "DRIFTING_KEDRO_LAUNCHER_PID"
STOP_GRACE_S = 10.0  # torchrun's agent stops its ranks on SIGTERM; SIGKILL after this


@dataclass(frozen=True)
class LaunchConfig:
    """Where and how many processes torchrun starts; mirrors torchrun's own flags."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""  # host:port of the rendezvous; empty = standalone single node
    rdzv_backend: str = "c10d"
    rdzv_id: str = "drifting-kedro"
    max_restarts: int = 0
    threads_per_process: int = 1  # OMP/torch threads per rank; 1 is fastest on a busy CPU

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1:
            raise ValueError(f"launch.nproc_per_node must be >= 1, got {self.nproc_per_node}")
        if self.nnodes < 1:
            raise ValueError(f"launch.nnodes must be >= 1, got {self.nnodes}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(
                f"launch.nnodes={self.nnodes} needs launch.rdzv_endpoint (host:port of node 0)"
            )
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(
                f"launch.node_rank={self.node_rank} must be in [0, nnodes={self.nnodes})"
            )


def torchrun_command(module: str, args: list[str], launch: LaunchConfig) -> list[str]:
    """The `torchrun ... -m module args` command line for these launch settings."""
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if launch.nnodes == 1 and not launch.rdzv_endpoint:
        cmd.append("--standalone")
    else:
        cmd += [
            f"--nnodes={launch.nnodes}",
            f"--node-rank={launch.node_rank}",
            f"--rdzv-backend={launch.rdzv_backend}",
            f"--rdzv-endpoint={launch.rdzv_endpoint}",
            f"--rdzv-id={launch.rdzv_id}",
        ]
    cmd += [
        f"--nproc-per-node={launch.nproc_per_node}",
        f"--max-restarts={launch.max_restarts}",
        "-m",
        module,
        *args,
    ]
    return cmd


def run_torchrun(
    module: str, args: list[str], launch: LaunchConfig, env: dict[str, str] | None = None
) -> None:
    """Run `module` under torchrun; its ranks print progress straight to this terminal.

    Raises:
        RuntimeError: when any rank fails, naming the command (the rank's traceback is above).
    """
    cmd = torchrun_command(module, args, launch)
    full_env = {**os.environ, **(env or {})}
    full_env["OMP_NUM_THREADS"] = str(launch.threads_per_process)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env[LAUNCHER_PID_ENV] = str(os.getpid())
    logger.info("Launching: %s", " ".join(cmd))
    process = subprocess.Popen(cmd, env=full_env, start_new_session=True)
    try:
        returncode = process.wait()
    except BaseException:
        stop_process_group(process)
        raise
    if returncode < 0:
        raise RuntimeError(
            f"torchrun was killed by {signal.Signals(-returncode).name}; its ranks stop with it."
            f" Command: {' '.join(cmd)}"
        )
    if returncode != 0:
        raise RuntimeError(
            f"torchrun exited with code {returncode} (the failing rank's error is printed above)."
            f" Command: {' '.join(cmd)}"
        )


def stop_process_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group `process` leads, then SIGKILL it if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("torchrun (pid %d) still runs %.0f s after SIGTERM", process.pid, grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
