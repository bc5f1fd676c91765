"""End to end against real containers: ``lifeguard run`` as a subprocess healing a real engine.

The engine and the busybox image come from ``tests.fixtures_docker``; the agent, the webhook
receiver and HTTP targets from ``tests.fixtures_agent``. Containers run on the host network and
serve on 127.0.0.1. Every wait is on observable state (a delivered event, an API answer, a
``docker inspect``), bounded, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures_agent import SECRET, AgentProcess, Receiver, agent_config, free_port, poll, wait_until

pytestmark = pytest.mark.docker

ENV = {"HOOK_SECRET": SECRET}
HEAL_EVENTS = {"incident.heal_attempted", "incident.heal_succeeded", "incident.heal_failed"}


def unique(prefix: str) -> str:
    return f"lg-e2e-{prefix}-{uuid.uuid4().hex[:8]}"


def webhook(receiver: Receiver) -> dict[str, Any]:
    return {"name": "ops", "type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "1s"}


def heal(max_restarts: int, cooldown: str = "1s", **extra: Any) -> dict[str, Any]:
    return {"max_restarts": max_restarts, "within": "10m", "cooldown": cooldown, **extra}


def httpd(port: int) -> list[str]:
    """Busybox httpd serving ``ok`` at /health on 127.0.0.1:port, in the foreground."""
    return ["sh", "-c", f"mkdir -p /www && echo ok > /www/health && exec httpd -f -p 127.0.0.1:{port} -h /www"]


def docker_config(checks: list[dict[str, Any]], notifiers: list[dict[str, Any]], url: str) -> dict[str, Any]:
    cfg = agent_config(checks, notifiers)
    cfg["docker"] = {"url": url, "timeout": "3s"}
    return cfg


async def inspect(client: Any, name: str) -> dict[str, Any]:
    return await asyncio.to_thread(lambda: client.api.inspect_container(name))


async def kill(client: Any, name: str) -> None:
    await asyncio.to_thread(lambda: client.containers.get(name).kill())


def started_at(attrs: dict[str, Any]) -> datetime:
    # Docker gives nanoseconds with trailing zeros trimmed: cut to microseconds to compare.
    whole, _, frac = attrs["State"]["StartedAt"].rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(frac + '000000')[:6]}")


async def checks_by_name(agent: AgentProcess) -> dict[str, dict[str, Any]]:
    status, body = await agent.api("/api/checks")
    assert status == 200
    return {c["name"]: c for c in body["checks"]}


async def wait_checks(agent: AgentProcess, states: dict[str, str], bound: float = 15) -> dict[str, dict[str, Any]]:
    return await poll(
        lambda: checks_by_name(agent),
        lambda got: all(got[n]["state"] == s for n, s in states.items()),
        bound,
        f"checks {states}",
    )


def of_incident(receiver: Receiver, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events if e["incident"]["id"] == incident_id]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def check_stream(receiver: Receiver, schema: Any) -> None:
    """Every payload is valid v1, every event id unique, and sequences rise 1, 2, … per incident."""
    by_incident: dict[str, list[int]] = {}
    for e in receiver.events:
        schema.validate(e)
        by_incident.setdefault(e["incident"]["id"], []).append(e["sequence"])
    for incident_id, seqs in by_incident.items():
        assert seqs == list(range(1, len(seqs) + 1)), (incident_id, seqs)
    ids = [e["event_id"] for e in receiver.events]
    assert len(ids) == len(set(ids))


def timeline_kinds(incident: dict[str, Any]) -> list[str]:
    """The timeline without delivery notes, whose place depends on the receiver's speed."""
    return [t["kind"] for t in incident["timeline"] if t["kind"] != "notified"]


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_anywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_anywhere(v)}
    return set()


def heal_restarts(agent: AgentProcess) -> list[dict[str, Any]]:
    return [e for e in agent.log_events() if e.get("event") == "heal.restart"]


async def test_heal_then_budget_persists_across_agent_restart(
    docker_url, docker_client, run_container, receiver, spawn_agent, payload_schema
) -> None:
    """Two kills are healed and resolved; after an agent restart the third finds the budget spent."""
    app = unique("app")
    run_container(app)
    cfg = docker_config(
        [{"name": "app", "type": "container", "container": app, "heal": heal(2)}], [webhook(receiver)], docker_url
    )
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    await wait_checks(agent, {"app": "passing"})

    timings: dict[str, list[float]] = {"kill_to_running": [], "kill_to_opened": [], "kill_to_resolved": []}
    incident_ids: list[str] = []
    for round_ in (1, 2):
        before = started_at(await inspect(docker_client, app))
        t0 = time.monotonic()
        await kill(docker_client, app)
        opened = (await wait_until(lambda: receiver.of("incident.opened")[round_ - 1 :], 10, f"opened #{round_}"))[0]
        timings["kill_to_opened"].append(time.monotonic() - t0)
        after = await poll(
            lambda: inspect(docker_client, app), lambda a: a["State"]["Running"], 10, f"{app} running again"
        )
        timings["kill_to_running"].append(time.monotonic() - t0)
        assert started_at(after) > before
        await wait_until(lambda: receiver.of("incident.resolved")[round_ - 1 :], 10, f"resolved #{round_}")
        timings["kill_to_resolved"].append(time.monotonic() - t0)

        inc_id = opened["incident"]["id"]
        assert inc_id not in incident_ids
        incident_ids.append(inc_id)
        events = of_incident(receiver, inc_id)
        assert names(events) == [
            "incident.opened", "incident.heal_attempted", "incident.heal_succeeded", "incident.resolved",
        ]  # fmt: skip
        assert opened["incident"]["container"] == app and opened["incident"]["check_type"] == "container"
        succeeded = events[2]["incident"]["heal"]
        assert succeeded == {"restarts": 1, "max_restarts": 2, "last_result": "succeeded"}
        assert events[3]["incident"]["status"] == "resolved"
        assert events[0]["evidence"]["container"]["state"]["status"] == "exited"
        assert events[0]["evidence"]["container"]["state"]["exit_code"] == 137

        status, full = await agent.api(f"/api/incidents/{inc_id}")
        assert status == 200
        assert timeline_kinds(full) == ["opened", "heal_attempted", "heal_succeeded", "resolved"]
        assert "notified" in [t["kind"] for t in full["timeline"]]
        attempted = next(t for t in full["timeline"] if t["kind"] == "heal_attempted")
        assert app in attempted["message"]
        await wait_checks(agent, {"app": "passing"})

    restarts = heal_restarts(agent)
    assert [(r["container"], r["ok"]) for r in restarts] == [(app, True), (app, True)]

    # A restart of the agent must not refill the budget: it is read back from SQLite.
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    again = spawn_agent(cfg, ENV)
    await again.ready()
    await wait_checks(again, {"app": "passing"})
    before = started_at(await inspect(docker_client, app))
    await kill(docker_client, app)

    escalated = (await wait_until(lambda: receiver.of("incident.escalated"), 10, "incident.escalated"))[0]
    inc_id = escalated["incident"]["id"]
    assert inc_id not in incident_ids
    assert escalated["reason"] == "heal_exhausted"
    assert escalated["incident"]["heal"] == {"restarts": 0, "max_restarts": 2, "last_result": "exhausted"}
    events = of_incident(receiver, inc_id)
    assert names(events) == ["incident.opened", "incident.escalated"]
    assert events[0]["occurred_at"] == escalated["occurred_at"]  # escalated at once, not after a heal
    status, full = await again.api(f"/api/incidents/{inc_id}")
    assert timeline_kinds(full) == ["opened", "heal_exhausted"]
    exhausted = next(t for t in full["timeline"] if t["kind"] == "heal_exhausted")
    assert "2 of 2 attempts used within 10m" in exhausted["message"]

    # The container stays down while the check keeps failing for several more intervals.
    def app_results() -> int:
        return sum(1 for e in again.log_events() if e.get("event") == "check.completed" and e.get("check") == "app")

    seen = app_results()
    deadline = time.monotonic() + 10
    while app_results() < seen + 5:
        attrs = await inspect(docker_client, app)
        assert attrs["State"]["Status"] == "exited" and started_at(attrs) == before
        assert time.monotonic() < deadline, "the app check stopped running"
        await asyncio.sleep(0.1)
    attrs = await inspect(docker_client, app)
    assert attrs["State"]["Status"] == "exited" and started_at(attrs) == before
    assert heal_restarts(again) == []
    assert not [e for e in of_incident(receiver, inc_id) if e["event"] in HEAL_EVENTS]
    checks = await checks_by_name(again)
    assert checks["app"]["state"] == "failing" and checks["app"]["incident_id"] == inc_id

    check_stream(receiver, payload_schema)
    print(f"\ntimings (s): { {k: [round(v, 2) for v in vs] for k, vs in timings.items()} }")


async def test_never_restarts_a_container_no_heal_names(
    docker_url, docker_client, run_container, receiver, spawn_agent, payload_schema
) -> None:
    """A watched container that no heal names stays down, while a healed neighbour is restarted."""
    bystander, patient = unique("bystander"), unique("patient")
    port = free_port()
    run_container(bystander, httpd(port))
    run_container(patient)
    cfg = docker_config(
        [
            {"name": "bystander", "type": "container", "container": bystander},
            {"name": "bystander-http", "type": "http", "url": f"http://127.0.0.1:{port}/health", "container": bystander},
            {"name": "patient", "type": "container", "container": patient, "heal": heal(2)},
        ],
        [webhook(receiver)],
        docker_url,
    )
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    await wait_checks(agent, {"bystander": "passing", "bystander-http": "passing", "patient": "passing"})
    before = await inspect(docker_client, bystander)

    await asyncio.gather(kill(docker_client, bystander), kill(docker_client, patient))
    # The healed neighbour going all the way round proves this agent heals; by then the
    # bystander has failed for many intervals.
    await wait_until(
        lambda: [e for e in receiver.of("incident.resolved") if e["incident"]["check"] == "patient"],
        15, "the patient healed and resolved",
    )  # fmt: skip
    opened = await wait_until(
        lambda: (o := {e["incident"]["check"]: e for e in receiver.of("incident.opened")}).keys()
        >= {"bystander", "bystander-http"} and o,
        10, "both bystander incidents",
    )  # fmt: skip
    await wait_checks(agent, {"patient": "passing", "bystander": "failing", "bystander-http": "failing"})

    after = await inspect(docker_client, bystander)
    assert after["State"]["Status"] == "exited" and after["State"]["ExitCode"] == 137
    assert after["RestartCount"] == before["RestartCount"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    # Only the patient: a loaded engine may need a second restart of it, never one of the bystander.
    assert {r["container"] for r in heal_restarts(agent)} == {patient}

    for check in ("bystander", "bystander-http"):
        inc = opened[check]["incident"]
        assert inc["heal"] is None and inc["container"] == bystander
        assert not [e for e in of_incident(receiver, inc["id"]) if e["event"] in HEAL_EVENTS]
        status, full = await agent.api(f"/api/incidents/{inc['id']}")
        assert not {"heal_attempted", "heal_succeeded", "heal_failed", "heal_exhausted"} & set(timeline_kinds(full))
        status, evidence = await agent.api(f"/api/incidents/{inc['id']}/evidence")
        assert status == 200
        container = evidence["opened"]["container"]
        assert container["name"] == bystander
        assert container["state"]["status"] == "exited" and container["state"]["running"] is False
        assert container["state"]["exit_code"] == 137
    assert "connection refused" in opened["bystander-http"]["incident"]["title"]
    check_stream(receiver, payload_schema)


async def test_heal_restarts_the_container_it_names(
    docker_url, docker_client, run_container, receiver, spawn_agent, payload_schema
) -> None:
    """An HTTP check with no container of its own heals by restarting ``restart_container``."""
    backend = unique("backend")
    port = free_port()
    run_container(backend, httpd(port))
    cfg = docker_config(
        [{"name": "backend-http", "type": "http", "url": f"http://127.0.0.1:{port}/health",
          "heal": heal(2, cooldown="2s", restart_container=backend)}],
        [webhook(receiver)],
        docker_url,
    )  # fmt: skip
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    await wait_checks(agent, {"backend-http": "passing"})
    before = started_at(await inspect(docker_client, backend))

    # httpd as PID 1 ignores SIGTERM: the stop ends in Docker's SIGKILL after a second.
    await asyncio.to_thread(lambda: docker_client.containers.get(backend).stop(timeout=1))
    resolved = (await wait_until(lambda: receiver.of("incident.resolved"), 15, "incident.resolved"))[0]
    inc = resolved["incident"]
    assert names(of_incident(receiver, inc["id"])) == [
        "incident.opened", "incident.heal_attempted", "incident.heal_succeeded", "incident.resolved",
    ]  # fmt: skip
    assert inc["check"] == "backend-http" and inc["container"] == backend
    assert "connection refused" in inc["title"]
    attrs = await inspect(docker_client, backend)
    assert attrs["State"]["Running"] and started_at(attrs) > before
    assert [(r["container"], r["ok"]) for r in heal_restarts(agent)] == [(backend, True)]
    status, full = await agent.api(f"/api/incidents/{inc['id']}")
    attempted = next(t for t in full["timeline"] if t["kind"] == "heal_attempted")
    assert attempted["message"] == f"restarting container '{backend}'"
    await wait_checks(agent, {"backend-http": "passing"})
    check_stream(receiver, payload_schema)


class RawReceiver(Receiver):
    """A receiver that also keeps each request body exactly as it came over the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def _hook(self, request: web.Request) -> web.Response:
        self.raw.append(await request.read())  # aiohttp caches the body for the parent's read
        return await super()._hook(request)


async def test_container_secrets_never_leave(
    docker_url, run_container, spawn_agent, payload_schema, tmp_path
) -> None:
    """A token in a failing container's env and logs is in no payload, evidence, log or database."""
    token = f"tok-{uuid.uuid4().hex}"
    leaky = unique("leaky")
    run_container(
        leaky,
        ["sh", "-c", 'echo "starting with token $API_TOKEN"; echo "Authorization: Bearer $API_TOKEN" >&2; exit 3'],
        environment={"API_TOKEN": token},
    )
    receiver = RawReceiver()
    await receiver.start()
    try:
        cfg = docker_config(
            [{"name": "leaky", "type": "container", "container": leaky, "heal": heal(1)}],
            [webhook(receiver), {"name": "log", "type": "file"}],
            docker_url,
        )
        agent = spawn_agent(cfg, ENV)
        await agent.ready()
        # opened → restart (prints the token again) → still failing after the cooldown → escalated
        escalated = (await wait_until(lambda: receiver.of("incident.escalated"), 15, "incident.escalated"))[0]
        inc_id = escalated["incident"]["id"]
        events = of_incident(receiver, inc_id)
        assert {"incident.opened", "incident.heal_attempted"} <= set(names(events))
        status, evidence = await agent.api(f"/api/incidents/{inc_id}/evidence")
        assert status == 200
        logs = evidence["opened"]["container"]["logs"]
        # The logs were collected, so their absence of the token means something.
        assert any("starting with token [redacted]" in line for line in logs), logs
        assert events[0]["evidence"]["container"]["logs"] == logs
        status, full = await agent.api(f"/api/incidents/{inc_id}")
        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        await receiver.stop()

    check_stream(receiver, payload_schema)
    assert len(receiver.raw) == len(receiver.requests) >= 3
    state = tmp_path / "state"
    file_events = (state / "events.jsonl").read_bytes()
    assert file_events.count(b"\n") >= 3
    texts = {
        "webhook bodies": b"".join(receiver.raw).decode(),
        "webhook payloads": json.dumps(receiver.events),
        "file notifier": file_events.decode(),
        "API evidence": json.dumps(evidence),
        "API incident": json.dumps(full),
        "agent log": agent.log_text(),
    }
    for where, text in texts.items():
        assert token not in text, f"the token leaked into the {where}"
    for db_file in sorted(state.glob("lifeguard.db*")):
        assert token.encode() not in db_file.read_bytes(), f"the token is in {db_file.name}"
    for doc in [*receiver.events, evidence, full]:
        assert "Env" not in keys_anywhere(doc)


async def test_agent_rides_out_an_unreachable_docker(
    docker_url, run_container, target, receiver, spawn_agent, tmp_path
) -> None:
    """No engine behind the socket: HTTP checks go on, /health degrades; it recovers once Docker is back."""
    alive = unique("alive")
    run_container(alive)
    socket_path = tmp_path / "d.sock"  # nothing listens here (yet)
    cfg = docker_config(
        [{"name": "web", "type": "http", "url": target.url},
         {"name": "alive", "type": "container", "container": alive}],
        [webhook(receiver)],
        f"unix://{socket_path}",
    )  # fmt: skip
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    checks = await wait_checks(agent, {"web": "passing", "alive": "failing"})
    assert "Docker unreachable" in checks["alive"]["last_result"]["message"]
    status, health = await agent.api("/health")
    assert status == 200 and health["status"] == "degraded"
    assert any(p.startswith("docker unreachable") for p in health["problems"]), health
    # One page for one cause: the engine's own incident; the container check's is held back by it.
    opened = (await wait_until(lambda: receiver.of("incident.opened"), 10, "incident.opened"))[0]
    assert (opened["incident"]["check"], opened["incident"]["check_type"]) == ("docker", "docker")
    held = (await poll(lambda: agent.api("/api/incidents?status=open"),
                       lambda r: any(i["check"] == "alive" for i in r[1]["incidents"]), 10, "alive's incident"))[1]
    [alive_incident] = [i for i in held["incidents"] if i["check"] == "alive"]
    assert alive_incident["suppressed_by"] == opened["incident"]["id"]

    # The HTTP check keeps its pace while every Docker call fails.
    hits = target.hits
    await wait_until(lambda: target.hits >= hits + 5, 5, "five more HTTP checks")
    assert (await checks_by_name(agent))["web"]["state"] == "passing"

    os.symlink(Path(docker_url.removeprefix("unix://")), socket_path)  # Docker "returns"
    await wait_checks(agent, {"web": "passing", "alive": "passing"})
    health = await poll(lambda: agent.api("/health"), lambda r: r[1]["status"] == "ok", 10, "/health ok")
    assert health[1]["problems"] == []
    resolved = (await wait_until(lambda: receiver.of("incident.resolved"), 10, "incident.resolved"))[0]
    assert resolved["incident"]["id"] == opened["incident"]["id"]
    assert [i["check"] for i in resolved["incident"]["impact"]] == ["alive"]
    assert {e["incident"]["check"] for e in receiver.events} == {"docker"}
    status, after = await agent.api(f"/api/incidents/{alive_incident['id']}")
    assert status == 200 and after["status"] == "resolved"  # recovered while held back: nothing sent


async def test_no_heal_is_a_dry_run(docker_url, docker_client, run_container, receiver, spawn_agent) -> None:
    """`run --no-heal`: the timeline says what it would restart; nothing is restarted or spent."""
    name = unique("dry")
    run_container(name)
    cfg = docker_config(
        [{"name": "dry", "type": "container", "container": name, "heal": heal(3, cooldown="200ms")}],
        [webhook(receiver)],
        docker_url,
    )
    agent = spawn_agent(cfg, ENV, args=["--no-heal"])
    await agent.ready()
    await wait_checks(agent, {"dry": "passing"})
    before = await inspect(docker_client, name)
    await kill(docker_client, name)
    opened = (await wait_until(lambda: receiver.of("incident.opened"), 10, "incident.opened"))[0]
    incident_id = opened["incident"]["id"]
    # several cooldowns pass while it keeps failing
    await poll(lambda: agent.api("/api/checks"), lambda r: r[1]["checks"][0]["state"] == "failing", 5, "failing")
    hits = len([e for e in agent.log_events() if e.get("event") == "check.completed"])
    await wait_until(
        lambda: len([e for e in agent.log_events() if e.get("event") == "check.completed"]) >= hits + 5,
        10, "five more check runs",
    )  # fmt: skip
    status, full = await agent.api(f"/api/incidents/{incident_id}")
    dry = [t for t in full["timeline"] if t["kind"] == "heal_attempted"]
    assert len(dry) == 1 and dry[0]["message"].startswith(f"dry run: would restart container '{name}'")
    assert full["heal"]["restarts"] == 0 and full["heal"]["last_result"] == "dry_run"
    assert not [e for e in receiver.events if e["event"] in HEAL_EVENTS | {"incident.escalated"}]
    after = await inspect(docker_client, name)
    assert after["State"]["Status"] == "exited" and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert heal_restarts(agent) == []
    assert "dry-run" in json.dumps([e for e in agent.log_events() if e.get("event") == "daemon.started"])
