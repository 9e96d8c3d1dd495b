import sys

import pytest

from drifting_kedro import launch
from drifting_kedro.launch import LaunchConfig, torchrun_command


def test_single_node_command_is_standalone():
    cmd = torchrun_command("pkg.mod", ["--x", "1"], LaunchConfig(nproc_per_node=2))
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nproc-per-node=2" in cmd
    assert cmd[-4:] == ["-m", "pkg.mod", "--x", "1"]


def test_multi_node_command_carries_the_rendezvous():
    launch = LaunchConfig(nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29500")
    cmd = torchrun_command("pkg.mod", [], launch)
    assert "--standalone" not in cmd
    assert {"--nnodes=2", "--node-rank=1", "--rdzv-endpoint=10.0.0.1:29500"} <= set(cmd)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"nproc_per_node": 0}, "nproc_per_node"),
        ({"nnodes": 2}, "rdzv_endpoint"),
        ({"nnodes": 2, "rdzv_endpoint": "h:1", "node_rank": 2}, "node_rank"),
    ],
)
def test_bad_launch_settings_name_the_parameter(fields, message):
    with pytest.raises(ValueError, match=message):
        LaunchConfig(**fields)


def test_a_killed_torchrun_is_named_as_killed(monkeypatch):
    suicide = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    monkeypatch.setattr(launch, "torchrun_command", lambda *args: suicide)
    with pytest.raises(RuntimeError, match="torchrun was killed by SIGKILL"):
        launch.run_torchrun("pkg.mod", [], LaunchConfig())
