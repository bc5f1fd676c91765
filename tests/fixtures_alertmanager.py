"""A real Prometheus Alertmanager for the tests, started and stopped by the test session itself.

Debian's ``prometheus-alertmanager`` (``scripts/test.sh`` installs it as root) runs on 127.0.0.1
with its own storage and no cluster listener, so no gossip leaves the machine. Its config keeps
alerts short-lived (``resolve_timeout`` of a few seconds) so a test sees an alert that nobody
re-posts time out, and groups by ``alertname`` and ``check`` so a fleet's alerts for one check
land in one group. Without the binary the tests that need it are skipped loudly, and under
``CI=true`` they fail instead, because a skipped Alertmanager test proves nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_agent import free_port

RESOLVE_TIMEOUT = 4.0  # seconds an alert nobody re-posts stays active
START_BOUND = 20.0  # seconds for the binary to say it is ready
STOP_BOUND = 10.0

CONFIG = f"""\
global:
  resolve_timeout: {RESOLVE_TIMEOUT:g}s
route:
  receiver: dummy
  group_by: [alertname, check]
  group_wait: 0s
receivers:
  - name: dummy
"""


def _unavailable(reason: str) -> None:
    message = f"ALERTMANAGER TESTS NOT RUN: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _find_binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Alertmanager:
    """One Alertmanager process on 127.0.0.1 and a few synchronous reads of its API v2."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = _find_binary()
        if binary is None:
            _unavailable("prometheus-alertmanager is not installed (apt-get install -y prometheus-alertmanager)")
        config = self.root / "alertmanager.yml"
        config.write_text(CONFIG)
        # fmt: off
        command = [
            str(binary), f"--config.file={config}", f"--storage.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
        ]
        # fmt: on
        with self.log.open("ab") as log_file:
            self.proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_BOUND
        while True:
            if self.proc.poll() is not None:
                _unavailable(f"alertmanager exited with code {self.proc.returncode} at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            if time.monotonic() > deadline:
                _unavailable(f"alertmanager not ready on {self.url} within {START_BOUND:g}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_BOUND)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_BOUND)
        self.proc = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no alertmanager log)"

    def get(self, path: str, **matchers: str) -> Any:
        """``GET /api/v2/{path}`` with one ``filter`` matcher per keyword (``check="api"``)."""
        query = urllib.parse.urlencode([("filter", f'{name}="{value}"') for name, value in matchers.items()])
        with urllib.request.urlopen(f"{self.url}/api/v2/{path}?{query}", timeout=5) as answer:
            return json.loads(answer.read())

    def active(self, **matchers: str) -> list[dict[str, Any]]:
        """The alerts matching ``matchers`` that Alertmanager holds as active now."""
        return [a for a in self.get("alerts", **matchers) if a["status"]["state"] == "active"]

    def groups(self, **matchers: str) -> list[dict[str, Any]]:
        return list(self.get("alerts/groups", **matchers))


@pytest.fixture(scope="session")
def alertmanager() -> Iterator[Alertmanager]:
    """An Alertmanager started for this session (short ``resolve_timeout``, grouped by alertname/check)."""
    root = Path(tempfile.mkdtemp(prefix="lg-alertmanager-"))
    am = Alertmanager(root)
    try:
        am.start()
        yield am
    finally:
        am.stop()
        shutil.rmtree(root, ignore_errors=True)
