"""The shipped systemd unit: `systemd-analyze verify` finds nothing to say (unknown keys and bad values
fail), `systemd-analyze security --offline=true` rates its exposure 2.5 or lower, and it gives the
agent's own bounded stop the time it needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "lifeguard.service"
MAX_EXPOSURE = 2.5
THREADS_JOIN = 1.0  # the command line's last wait for worker threads after the daemon stopped

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@needs_systemd
def test_unit_verifies(tmp_path: Path) -> None:
    lifeguard = Path(sys.executable).parent / "lifeguard"
    assert lifeguard.exists(), "the console script is installed with the package"
    unit = UNIT.read_text()
    assert "/usr/local/bin/lifeguard" in unit
    # The unit names the installed path (the installer's link); verify it against this venv's.
    (tmp_path / "lifeguard.service").write_text(unit.replace("/usr/local/bin/lifeguard", str(lifeguard)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--recursive-errors=no", str(tmp_path / "lifeguard.service")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@needs_systemd
def test_security_exposure_is_at_most_2_5() -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60,
    )
    found = re.search(r"Overall exposure level for lifeguard\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found[1]) <= MAX_EXPOSURE, done.stdout
    readme = (ROOT / "README.md").read_text()
    assert f"rates it **{found[1]}**" in readme, "the README states the measured figure"


def test_the_unit_is_a_notify_service_with_a_watchdog_and_a_reload() -> None:
    s = settings()
    assert s["Type"] == ["notify"] and s["WatchdogSec"] == ["30s"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["ExecStartPre"] == ["/usr/local/bin/lifeguard check-config -c /etc/lifeguard/config.yaml"]
    assert s["ExecStart"] == ["/usr/local/bin/lifeguard run -c /etc/lifeguard/config.yaml"]
    assert s["RestartPreventExitStatus"] == ["2 3 4"] and s["Restart"] == ["on-failure"]
    assert s["User"] == ["lifeguard"] and "DynamicUser" not in s
    assert s["CapabilityBoundingSet"] == [""] and s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    for kept_out in ("PrivateUsers", "ProcSubset", "ProtectProc"):  # docker group, psutil
        assert kept_out not in s


def test_systemd_waits_longer_than_the_agents_own_stop() -> None:
    from agent.config import load_config
    from agent.daemon import Daemon

    daemon = Daemon(load_config(ROOT / "config.yaml"))
    daemon._wire()  # builds the parts, no I/O
    bound = daemon.supervisor.stop_bound + THREADS_JOIN
    timeout = float(settings()["TimeoutStopSec"][0].removesuffix("s"))
    assert bound < timeout - 5, f"the agent may take {bound:.0f}s to stop; TimeoutStopSec is {timeout:.0f}s"
    assert "systemd" in [c.name for c, _ in daemon.supervisor._components][-1:]
