"""The shipped systemd unit passes `systemd-analyze verify` (unknown keys and bad values fail)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_verifies(tmp_path: Path) -> None:
    lifeguard = Path(sys.executable).parent / "lifeguard"
    assert lifeguard.exists(), "the console script is installed with the package"
    unit = (ROOT / "systemd" / "lifeguard.service").read_text()
    assert "/usr/local/bin/lifeguard" in unit
    # The unit names the installed path of the README's instructions; verify it against this venv's.
    (tmp_path / "lifeguard.service").write_text(unit.replace("/usr/local/bin/lifeguard", str(lifeguard)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--recursive-errors=no", str(tmp_path / "lifeguard.service")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
