"""scripts/install_vulkan.sh: the setup's guarded Mesa backport, run against stand-in commands.

The stand-ins (dpkg-query, apt-get, tee, id, sudo) come first on PATH and log their calls, so
no test touches the machine's packages.
"""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install_vulkan.sh"


@pytest.fixture
def fake_system(tmp_path):
    """Writes stand-ins; returns a runner taking the installed Mesa version, codename, uid and
    whether apt succeeds, and giving (completed process, logged calls)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()

    def run(mesa: str, codename: str = "bookworm", uid: int = 0, apt_ok: bool = True):
        stand_ins = {
            "dpkg-query": f"echo -n '{mesa}'",
            "apt-get": f'echo "apt-get $*" >> {log}; exit {0 if apt_ok else 100}',
            "tee": f'echo "tee $*" >> {log}; cat > /dev/null',
            "id": f"echo {uid}",
            "sudo": "exit 1",
        }
        for name, body in stand_ins.items():
            path = bin_dir / name
            path.write_text(f"#!/bin/sh\n{body}\n")
            path.chmod(0o755)
        release = tmp_path / "os-release"
        release.write_text(f"VERSION_CODENAME={codename}\n")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OS_RELEASE": str(release)}
        done = subprocess.run(
            ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False
        )
        return done, log.read_text() if log.exists() else ""

    return run


def test_recent_mesa_is_left_alone(fake_system):
    done, calls = fake_system("25.0.7-2~bpo12+1")
    assert done.returncode == 0 and calls == "" and done.stderr == ""


def test_debian12_root_installs_from_backports(fake_system):
    done, calls = fake_system("22.3.6-1+deb12u1")
    assert done.returncode == 0
    assert "install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1" in calls


def test_failed_install_warns_without_failing_the_setup(fake_system):
    done, _ = fake_system("", apt_ok=False)
    assert done.returncode == 0
    assert "installing Mesa 25's Vulkan driver failed" in done.stderr
    assert "apt-get install -t bookworm-backports mesa-vulkan-drivers" in done.stderr


def test_without_root_or_sudo_prints_the_command(fake_system):
    done, calls = fake_system("22.3.6-1", uid=1000)
    assert done.returncode == 0 and calls == ""
    assert "as root run: apt-get install -t bookworm-backports" in done.stderr


def test_other_systems_are_told_what_to_install(fake_system):
    done, calls = fake_system("", codename="jammy")
    assert done.returncode == 0 and calls == ""
    assert "this is not Debian 12" in done.stderr
