"""scripts/install.sh on a Debian machine without systemd running (a container), from an offline release.

What it installs, the config it writes (only if absent: 0640 root:lifeguard, state in
/var/lib/lifeguard), an upgrade that keeps the config, and ``--uninstall``. The systemd side (enable,
start, restart on upgrade, stop on uninstall) is tests/test_systemd_pid1.py.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_images import Docker, project_source

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "/usr/src/lifeguard"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_are_shellcheck_clean() -> None:
    scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh"))
    done = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


@pytest.fixture
def debian(
    images_docker: Docker, debian_python_image: str, wheels: Path, tmp_path: Path
) -> Iterator[tuple[Docker, str]]:
    """A Debian container (python3-venv, no systemd running) with a release unpacked read-only."""
    release = project_source(tmp_path / "lifeguard")
    shutil.copytree(wheels, release / "wheels")
    name = f"lg-install-{uuid.uuid4().hex[:8]}"
    images_docker(
        "run", "-d", "--name", name, "--network", "host", "-v", f"{release}:{SOURCE}:ro",
        debian_python_image, "sleep", "infinity",
    )  # fmt: skip
    try:
        yield images_docker, name
    finally:
        subprocess.run([images_docker.binary, "-H", images_docker.url, "rm", "-f", name], capture_output=True)


@pytest.mark.docker
def test_install_upgrade_and_uninstall_without_systemd(debian: tuple[Docker, str]) -> None:
    docker, name = debian

    def sh(command: str) -> str:
        return docker("exec", name, "bash", "-c", command, timeout=300)

    output = sh(f"bash {SOURCE}/scripts/install.sh")
    assert "created system user and group lifeguard" in output
    assert "installing from the wheels in" in output
    assert "wrote /etc/lifeguard/config.yaml (0640 root:lifeguard" in output
    assert "no systemd here" in output or "systemd is not running here" in output
    assert sh("stat -c '%a %U:%G' /etc/lifeguard/config.yaml /etc/lifeguard/env").split("\n")[:2] == [
        "640 root:lifeguard",
        "640 root:lifeguard",
    ]
    assert sh("stat -c '%a %U' /var/lib/lifeguard").strip() == "700 lifeguard"
    assert "state_dir: /var/lib/lifeguard\n" in sh("cat /etc/lifeguard/config.yaml")
    assert sh("lifeguard --version").startswith("lifeguard ")
    assert sh("readlink /usr/local/bin/lifeguard").strip() == "/opt/lifeguard/bin/lifeguard"
    assert sh("getent passwd lifeguard").split(":")[6].strip() in ("/usr/sbin/nologin", "/bin/false")
    # The agent's user can read its config, and it validates.
    assert sh("setpriv --reuid lifeguard --regid lifeguard --init-groups lifeguard check-config "
              "-c /etc/lifeguard/config.yaml").startswith("ok:")  # fmt: skip

    sh("echo '# edited by the operator' >> /etc/lifeguard/config.yaml")
    edited = sh("cat /etc/lifeguard/config.yaml")
    output = sh(f"bash {SOURCE}/scripts/install.sh")
    assert "system user lifeguard exists" in output and "kept the existing /etc/lifeguard/config.yaml" in output
    assert sh("cat /etc/lifeguard/config.yaml") == edited

    output = sh(f"bash {SOURCE}/scripts/install.sh --uninstall")
    assert "removed /opt/lifeguard" in output and "removed /usr/local/bin/lifeguard" in output
    assert sh("find /opt /usr/local/bin -mindepth 1").split() == []
    assert sh("cat /etc/lifeguard/config.yaml") == edited
    assert sh("test -d /var/lib/lifeguard && getent passwd lifeguard >/dev/null && echo kept").strip() == "kept"
