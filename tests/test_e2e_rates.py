"""Flapping end to end: ``lifeguard run`` as a real subprocess, an alternating target and a real
webhook receiver, all on 127.0.0.1."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.fixtures_agent import SECRET, Receiver, Target, agent_config, poll, wait_until


class Alternating(Target):
    """Fails every other request while ``alternate`` is on, else passes."""

    def __init__(self) -> None:
        super().__init__()
        self.alternate = True

    async def _health(self, request: web.Request) -> web.Response:
        self.hits += 1
        failing = self.alternate and self.hits % 2 == 1
        return web.Response(status=500 if failing else 200, text="down" if failing else "ok")


@pytest.fixture
async def alternating() -> AsyncIterator[Alternating]:
    t = Alternating()
    await t.start()
    yield t
    await t.stop()


async def test_an_alternating_target_yields_one_flapping_incident_not_a_storm(
    alternating, receiver: Receiver, spawn_agent, payload_schema
) -> None:
    cfg = agent_config(
        [{"name": "api", "type": "http", "url": alternating.url, "baseline": {"window": "1h", "min_samples": 3}}],
        [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "1s"}],
    )
    agent = spawn_agent(cfg, {"HOOK_SECRET": SECRET})
    await agent.ready()
    updated = await wait_until(lambda: receiver.of("incident.updated"), 20, "incident.updated (flapping)")
    hits_then = alternating.hits
    await wait_until(lambda: alternating.hits >= hits_then + 10, 20, "ten more results while flapping")
    assert len(receiver.of("incident.opened")) == 1 and receiver.of("incident.resolved") == []
    assert len(receiver.of("incident.updated")) == 1
    event = updated[0]
    payload_schema.validate(event)
    assert event["changes"] == ["flapping"] and event["incident"]["flapping"] is True
    incident_id = event["incident"]["id"]
    status, incident = await agent.api(f"/api/incidents/{incident_id}")
    assert status == 200 and incident["flapping"] is True and incident["status"] == "open"
    assert [t["kind"] for t in incident["timeline"] if t["kind"] != "notified"] == ["opened", "flapping_started"]
    status, checks = await agent.api("/api/checks")
    [check] = checks["checks"]
    assert check["flapping"] is True and check["incident_id"] == incident_id
    assert check["baseline_ms"] is not None and check["baseline_ms"] > 0  # from its passing results

    alternating.alternate = False  # it settles: stops flapping, then resolves as usual
    resolved = (await wait_until(lambda: receiver.of("incident.resolved"), 30, "incident.resolved"))[0]
    assert resolved["incident"]["id"] == incident_id and resolved["incident"]["flapping"] is False
    stopped = receiver.of("incident.updated")[1]
    payload_schema.validate(stopped)
    assert stopped["changes"] == ["flapping"] and stopped["incident"]["flapping"] is False
    assert [e["sequence"] for e in receiver.events] == [1, 2, 3, 4]
    status, listed = await agent.api("/api/incidents")
    assert [i["id"] for i in listed["incidents"]] == [incident_id] and listed["incidents"][0]["flapping"] is False
    status, checks = await agent.api("/api/checks")
    assert checks["checks"][0]["flapping"] is False

    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    assert any(e.get("event") == "incident.flapping" for e in agent.log_events())


async def test_a_real_agent_keeps_its_baseline_across_a_restart(target: Target, spawn_agent) -> None:
    cfg = agent_config(
        [{"name": "api", "type": "http", "url": target.url, "baseline": {"window": "1h", "min_samples": 5}}], [],
    )
    agent = spawn_agent(cfg)
    await agent.ready()

    async def baseline(of) -> float | None:
        _, body = await of.api("/api/checks")
        return body["checks"][0]["baseline_ms"]

    await wait_until(lambda: target.hits >= 8, 20, "eight passing results")
    agent.signal(signal.SIGTERM)  # while stopping, no result comes in
    assert await agent.wait() == 0
    target.status = 500  # failing results never count toward a baseline
    again = spawn_agent(cfg)
    await again.ready()
    first = await baseline(again)
    assert first is not None and first > 0  # read back from SQLite, not learnt anew
    hits = target.hits
    await wait_until(lambda: target.hits >= hits + 3, 20, "three failing results")
    assert await baseline(again) == first
    again.signal(signal.SIGTERM)
    assert await again.wait() == 0


class Slowable(Target):
    """Answers after ``delay`` seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0

    async def _health(self, request: web.Request) -> web.Response:
        import asyncio

        self.hits += 1
        await asyncio.sleep(self.delay)
        return web.Response(text="ok")


async def test_a_baseline_condition_fails_a_check_slower_than_its_own_usual(spawn_agent) -> None:
    """The agent's baseline reaches the condition language: `latency < 5x baseline` holds while the
    target answers as usual and fails, naming the condition, once it is much slower."""
    target = Slowable()
    await target.start()
    try:
        cfg = agent_config(
            [{"name": "api", "type": "http", "url": target.url, "conditions": ["latency < 5x baseline"],
              "interval": "500ms", "timeout": "500ms",
              "baseline": {"window": "1h", "min_samples": 5}}],
            [],
        )
        agent = spawn_agent(cfg)
        await agent.ready()

        async def check() -> dict:
            _, body = await agent.api("/api/checks")
            return body["checks"][0]

        learned = await poll(check, lambda c: c["baseline_ms"] is not None, 20, "a baseline")
        assert learned["state"] == "passing"
        target.delay = max(0.3, 20 * learned["baseline_ms"] / 1000)
        failed = await poll(check, lambda c: c["state"] == "failing", 20, "the check failing on its baseline")
        assert failed["last_result"]["message"].startswith("HTTP 200: condition failed: latency < 5x baseline (got ")
        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        await target.stop()
