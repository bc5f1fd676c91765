"""The heal kinds end to end: ``lifeguard run`` as a real subprocess healing with a command, with
``systemctl`` and by stopping a real container, and ``restart_service`` against a real systemd.

The HTTP target answers 500 until a flag file exists, so a heal that creates the file fixes it.
The ``systemctl`` the agent finds on its ``PATH`` is a script of the test's own that records its
arguments (this machine runs no systemd); the last tests put a real systemd behind that name, in a
container booted as ``tests/test_systemd_pid1.py`` boots it. Waits are on observable state.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from actions.healers import RestartServiceHealer
from agent.redact import REDACTED
from checks import CheckContext
from tests.fixtures_agent import (
    SECRET,
    AgentProcess,
    LocalServer,
    Receiver,
    agent_config,
    free_port,
    poll,
    wait_until,
)
from tests.fixtures_images import SYSTEMD_RUN_FLAGS, Docker

TOKEN = "api-t0ken-for-heal-tests-8c1f"
ENV = {"HOOK_SECRET": SECRET, "API_TOKEN": TOKEN}


class GatedTarget(LocalServer):
    """An HTTP service that answers 500 until its flag file exists, 200 after."""

    def __init__(self, flag: Path) -> None:
        super().__init__()
        self.flag = flag

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok") if self.flag.exists() else web.Response(status=500, text="queue stuck")

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)


@pytest.fixture
async def gated(tmp_path: Path) -> Any:
    server = GatedTarget(tmp_path / "fixed.flag")
    await server.start()
    yield server
    await server.stop()


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def config(checks: list[dict[str, Any]], receiver: Receiver, **extra: Any) -> dict[str, Any]:
    cfg = agent_config(
        checks,
        [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "1s"}],
    )
    cfg["agent"]["api"]["token"] = "${API_TOKEN}"
    cfg.update(extra)
    return cfg


async def incident_when(agent: AgentProcess, done: Any, what: str, bound: float = 20) -> dict[str, Any]:
    """The agent's first incident, once ``done`` holds for it (read through the API)."""

    async def newest() -> dict[str, Any] | None:
        status, listed = await agent.api("/api/incidents", TOKEN)
        assert status == 200
        if not listed["incidents"]:
            return None
        status, full = await agent.api(f"/api/incidents/{listed['incidents'][-1]['id']}", TOKEN)
        return full if status == 200 else None

    found: dict[str, Any] = await poll(newest, lambda i: i is not None and done(i), bound, what)
    return found


def kinds(incident: dict[str, Any]) -> list[str]:
    return [t["kind"] for t in incident["timeline"] if t["kind"] != "notified"]


def entry(incident: dict[str, Any], kind: str) -> str:
    [message] = [t["message"] for t in incident["timeline"] if t["kind"] == kind]
    return str(message)


def events_of(receiver: Receiver, incident_id: str) -> list[str]:
    return [e["event"] for e in receiver.events if e["incident"]["id"] == incident_id]


async def test_a_command_that_fixes_the_target_heals_it(
    gated: GatedTarget, receiver: Receiver, spawn_agent: Any, payload_schema: Any, tmp_path: Path
) -> None:
    """run: the command creates the flag, the check passes, the heal succeeded; what it printed is on
    the timeline and in the evidence with the configured secret masked, and no Docker client starts."""
    fix = script(tmp_path / "flush-queue", 'echo "flushing with $API_TOKEN"\ntouch "$1"\necho flushed\n')
    cfg = config(
        [{"name": "queue", "type": "http", "url": gated.url,
          "heal": {"run": [str(fix), str(gated.flag)], "timeout": "5s", "cooldown": "5s", "max_restarts": 2}}],
        receiver,
    )  # fmt: skip
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    incident = await incident_when(agent, lambda i: i["status"] == "resolved" and "heal_output" in kinds(i), "a heal")
    assert gated.flag.exists()
    found = kinds(incident)
    assert found[:2] == ["opened", "heal_attempted"] and found[-1] == "resolved"
    assert sorted(found[2:-1]) == ["heal_output", "heal_succeeded"]  # the output may be written after the pass
    assert entry(incident, "heal_attempted") == f"running command '{fix} {gated.flag}'"
    assert entry(incident, "heal_output") == f"flushing with {REDACTED}\nflushed\n"
    status, evidence = await agent.api(f"/api/incidents/{incident['id']}/evidence", TOKEN)
    assert status == 200
    [heal] = evidence["opened"]["heals"]
    assert (heal["kind"], heal["ok"], heal["output"]) == ("run", True, f"flushing with {REDACTED}\nflushed\n")
    await wait_until(lambda: "incident.resolved" in events_of(receiver, incident["id"]), 10, "incident.resolved")
    assert events_of(receiver, incident["id"]) == [
        "incident.opened", "incident.heal_attempted", "incident.heal_succeeded", "incident.resolved"
    ]  # fmt: skip
    for event in receiver.events:
        payload_schema.validate(event)
    logged = agent.log_events()
    assert [e["ok"] for e in logged if e.get("event") == "heal.done"] == [True]
    assert not [e for e in logged if str(e.get("event", "")).startswith("docker.")]  # no Docker client
    assert TOKEN not in agent.log_text()


async def test_restart_service_runs_the_systemctl_on_path(
    gated: GatedTarget, receiver: Receiver, spawn_agent: Any, tmp_path: Path
) -> None:
    """restart_service: the agent runs ``systemctl --no-ask-password restart UNIT``; the "restart"
    fixes the target and the heal succeeds."""
    folder = tmp_path / "bin"
    folder.mkdir()
    argv = tmp_path / "systemctl.argv"
    script(folder / "systemctl", f'printf "%s\\n" "$@" > {argv}\ntouch {gated.flag}\n')
    cfg = config(
        [{"name": "web", "type": "http", "url": gated.url, "heal": {"restart_service": "web-frontend"}}], receiver
    )
    agent = spawn_agent(cfg, {**ENV, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"})
    await agent.ready()
    incident = await incident_when(agent, lambda i: i["status"] == "resolved", "the incident to resolve")
    assert argv.read_text().splitlines() == ["--no-ask-password", "restart", "web-frontend.service"]
    assert kinds(incident) == ["opened", "heal_attempted", "heal_succeeded", "resolved"]
    assert entry(incident, "heal_attempted") == "restarting unit 'web-frontend.service'"
    assert [e["ok"] for e in agent.log_events() if e.get("event") == "heal.done"] == [True]


@pytest.mark.docker
async def test_stop_container_contains_then_escalates(
    docker_url: str, docker_client: Any, run_container: Any, receiver: Receiver, spawn_agent: Any
) -> None:
    """stop_container stops the container; the check keeps failing, so the timeline says heal_failed
    once the cooldown is over and, with a budget of one, the incident escalates."""
    name = f"lg-stop-{uuid.uuid4().hex[:8]}"
    # sh as PID 1 ignores SIGTERM unless it traps it: this one stops at once.
    run_container(name, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    cfg = config(
        [{"name": "worker-api", "type": "http", "url": f"http://127.0.0.1:{free_port()}/health",
          "heal": {"stop_container": name, "max_restarts": 1, "within": "10m", "cooldown": "1s"}}],
        receiver,
        docker={"url": docker_url, "timeout": "5s"},
    )  # fmt: skip
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    incident = await incident_when(agent, lambda i: "heal_exhausted" in kinds(i), "heal_exhausted")
    assert kinds(incident) == ["opened", "heal_attempted", "heal_failed", "heal_exhausted"]
    assert entry(incident, "heal_attempted") == f"stopping container '{name}'"
    assert entry(incident, "heal_failed") == "check still failing when the cooldown ended"
    assert entry(incident, "heal_exhausted") == f"stop budget spent for container '{name}': 1 of 1 attempts used within 10m"
    assert incident["container"] == name  # its logs and state are in the evidence
    attrs = await asyncio.to_thread(docker_client.api.inspect_container, name)
    assert attrs["State"]["Status"] == "exited"
    await wait_until(lambda: "incident.escalated" in events_of(receiver, incident["id"]), 10, "incident.escalated")
    assert events_of(receiver, incident["id"]) == [
        "incident.opened", "incident.heal_attempted", "incident.heal_failed", "incident.escalated"
    ]  # fmt: skip
    [stop] = [e for e in agent.log_events() if e.get("event") == "heal.done"]
    assert (stop["kind"], stop["target"], stop["ok"], stop["message"]) == (
        "stop_container", name, True, f"stopped container '{name}'"
    )  # fmt: skip


# -- a real systemd ---------------------------------------------------------------------------------


class Machine:
    """A booted systemd container; ``sh`` runs a command in it as root."""

    def __init__(self, docker: Docker, name: str) -> None:
        self.docker, self.name = docker, name

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.docker.binary, "-H", self.docker.url, "exec", self.name, "sh", "-c", command],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def sh(self, command: str) -> str:
        done = self.run(command)
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout.strip()


WEB_PORT = free_port()
UNITS = {
    "demo.service": "[Service]\nExecStart=/bin/sh -c 'echo started >> /run/demo.starts; exec sleep infinity'\n",
    "broken.service": "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    # A web service on the host network, as the agent on the host sees it.
    "demo-web.service": "[Service]\nExecStartPre=/bin/sh -c 'mkdir -p /srv/www && echo ok > /srv/www/health'\n"
                        f"ExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 --directory /srv/www {WEB_PORT}\n",
}


@pytest.fixture(scope="module")
def machine(images_docker: Docker, systemd_image: str) -> Iterator[Machine]:
    name = f"lg-heal-systemd-{uuid.uuid4().hex[:8]}"
    images_docker("run", "-d", "--name", name, *SYSTEMD_RUN_FLAGS, systemd_image)
    machine = Machine(images_docker, name)
    try:
        deadline = 60.0
        end = time.monotonic() + deadline
        while machine.run("systemctl is-system-running").stdout.strip() not in ("running", "degraded"):
            assert time.monotonic() < end, f"systemd did not boot within {deadline}s"
            time.sleep(0.2)
        for unit, text in UNITS.items():
            machine.sh(f"cat > /etc/systemd/system/{unit} <<'EOF'\n{text}EOF")
        machine.sh("systemctl daemon-reload && systemctl start demo.service demo-web.service")
        yield machine
    finally:
        subprocess.run([images_docker.binary, "-H", images_docker.url, "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture
def real_systemctl(machine: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    """``systemctl`` on PATH is the machine's: the heal's command runs in the container as given."""
    folder = tmp_path / "bin"
    folder.mkdir()
    docker = machine.docker
    script(folder / "systemctl", f'exec {docker.binary} -H {docker.url} exec {machine.name} systemctl "$@"\n')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return machine


@pytest.mark.docker
async def test_restart_service_restarts_a_real_unit(real_systemctl: Machine) -> None:
    machine = real_systemctl
    before = machine.sh("systemctl show -p InvocationID --value demo.service")
    outcome = await RestartServiceHealer("demo.service", CheckContext(), timeout=30.0).heal()
    assert (outcome.ok, outcome.message) == (True, "restarted unit 'demo.service'")
    assert machine.sh("systemctl show -p InvocationID --value demo.service") != before
    assert machine.sh("systemctl is-active demo.service") == "active"
    assert machine.sh("cat /run/demo.starts").splitlines() == ["started", "started"]


@pytest.mark.docker
async def test_a_unit_that_fails_to_start_fails_the_heal_with_systemctls_words(real_systemctl: Machine) -> None:
    outcome = await RestartServiceHealer("broken.service", CheckContext(), timeout=30.0).heal()
    assert not outcome.ok
    assert outcome.message.startswith("systemctl exited with status 1: Job for broken.service failed")


@pytest.mark.docker
async def test_the_agent_heals_a_stopped_unit_by_restarting_it(
    real_systemctl: Machine, receiver: Receiver, spawn_agent: Any
) -> None:
    """The whole loop with a real unit: it stops, the check fails, the agent restarts it, it passes."""
    machine = real_systemctl
    cfg = config(
        [{"name": "demo-web", "type": "http", "url": f"http://127.0.0.1:{WEB_PORT}/health", "interval": "1s",
          "heal": {"restart_service": "demo-web", "timeout": "20s", "cooldown": "20s"}}],
        receiver,
    )  # fmt: skip
    agent = spawn_agent(cfg, {**ENV, "PATH": os.environ["PATH"]})  # the real systemctl's wrapper first
    await agent.ready()
    await poll(lambda: agent.api("/api/checks", TOKEN), lambda r: r[1]["checks"][0]["state"] == "passing", 20,
               "the unit to serve")  # fmt: skip
    machine.sh("systemctl stop demo-web.service")
    incident = await incident_when(agent, lambda i: i["status"] == "resolved", "the incident to resolve", 40)
    assert kinds(incident) == ["opened", "heal_attempted", "heal_succeeded", "resolved"]
    assert entry(incident, "heal_attempted") == "restarting unit 'demo-web.service'"
    assert machine.sh("systemctl is-active demo-web.service") == "active"
