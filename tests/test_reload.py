"""Live reload end to end: ``lifeguard run`` as a subprocess, its config file rewritten, then SIGHUP,
``lifeguard reload`` or ``POST /api/reload``; and the pure parts of ``agent.reload``."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from agent.reload import diff, read_pid
from tests.fixtures_agent import ROOT, SECRET, AgentProcess, Receiver, agent_config, free_port, poll, wait_until

ENV = {"LG_SECRET": SECRET}


def webhook(receiver: Receiver, name: str = "ops") -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": receiver.url, "secret": "${LG_SECRET}"}


def events(agent: AgentProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in agent.log_events() if e.get("event") == name]


async def checks(agent: AgentProcess) -> dict[str, dict[str, Any]]:
    _, body = await agent.api("/api/checks")
    return {c["name"]: c for c in body["checks"]}


async def health(agent: AgentProcess) -> dict[str, Any]:
    _, body = await agent.api("/health")
    return body


async def post(agent: AgentProcess, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{agent.api_port}{path}", headers=headers) as r:
            return r.status, await r.json()


async def reloaded(agent: AgentProcess, count: int) -> None:
    await wait_until(lambda: len(events(agent, "reload.applied")) >= count, 10, f"reload #{count} applied")


def started_at(agent: AgentProcess, check: str) -> list[float]:
    db = sqlite3.connect(agent.workdir / "state" / "lifeguard.db")
    try:
        return [row[0] for row in db.execute("SELECT started_at FROM results WHERE check_name = ? ORDER BY 1", (check,))]
    finally:
        db.close()


def phase(times: list[float], interval: float) -> float:
    """The median offset of runs within their interval: a restarted schedule shifts it."""
    return statistics.median(t % interval for t in times)


def test_diff_tells_added_changed_removed_and_unchanged() -> None:
    class Named:
        def __init__(self, name: str, value: int) -> None:
            self.name, self.value = name, value

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named) and (self.name, self.value) == (other.name, other.value)

        __hash__ = None  # type: ignore[assignment]

    old = [Named("keep", 1), Named("gone", 1), Named("chg", 1), Named("flip", 1)]
    new = [Named("keep", 1), Named("chg", 2), Named("new", 1), Named("flip", 1)]
    d = diff(old, new, changed_too=["flip"])
    assert (d.added, d.changed, d.removed, d.unchanged) == (["new"], ["chg", "flip"], ["gone"], ["keep"])


async def test_sighup_applies_added_removed_changed_and_unchanged_checks(target, receiver, spawn_agent) -> None:
    failing = free_port()  # nothing listens: tcp checks on it fail
    keep = {"name": "keep", "type": "http", "url": target.url, "interval": "500ms"}
    gone = {"name": "gone", "type": "tcp", "host": "127.0.0.1", "port": failing}
    chg = {"name": "chg", "type": "tcp", "host": "127.0.0.1", "port": failing, "severity": "low"}
    cfg = agent_config([keep, gone, chg], [webhook(receiver)])
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    before = await poll(lambda: checks(agent), lambda c: c["gone"]["incident_id"] and c["chg"]["incident_id"],
                        what="incidents open for gone and chg")
    assert read_pid(agent.workdir / "state") == agent.proc.pid
    await asyncio.sleep(3)  # runs of keep to measure its schedule by
    runs_before = started_at(agent, "keep")

    chg_new = dict(chg, severity="critical", interval="300ms")
    added = {"name": "added", "type": "http", "url": target.url}
    agent.config["checks"] = [keep, chg_new, added]
    agent.write_config()
    agent.signal(signal.SIGHUP)
    await reloaded(agent, 1)
    applied = events(agent, "reload.applied")[-1]
    assert applied["checks"] == {"added": ["added"], "changed": ["chg"], "removed": ["gone"]}

    after = await poll(lambda: checks(agent), lambda c: c["added"]["last_result"] is not None, what="added runs")
    assert set(after) == {"keep", "chg", "added"}
    assert after["chg"]["incident_id"] == before["chg"]["incident_id"]  # changed: same incident
    _, removed = await agent.api(f"/api/incidents/{before['gone']['incident_id']}")
    assert removed["status"] == "resolved" and removed["resolve_reason"] == "check_removed"
    await wait_until(lambda: any(e["incident"]["id"] == removed["id"] for e in receiver.of("incident.resolved")),
                     10, "the removed check's incident.resolved")

    await asyncio.sleep(3)
    runs_after = [t for t in started_at(agent, "keep") if t > runs_before[-1]]
    assert len(runs_after) >= 4
    # Unchanged: the same schedule (a restarted one starts at a new random offset).
    shift = abs(phase(runs_before, 0.5) - phase(runs_after, 0.5))
    assert min(shift, 0.5 - shift) < 0.06, (runs_before, runs_after)
    assert not [e for e in events(agent, "incident.opened") if e["check"] == "chg" and e["incident_id"]
                != before["chg"]["incident_id"]]
    health_now = await health(agent)
    assert health_now["last_reload"]["ok"] is True and health_now["config_loaded_at"]

    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    assert read_pid(agent.workdir / "state") is None  # removed at stop
    assert not (agent.workdir / "state" / "lifeguard.pid").exists()


async def test_an_invalid_config_is_refused_as_a_whole_and_the_old_one_keeps_running(target, spawn_agent) -> None:
    cfg = agent_config([{"name": "web", "type": "http", "url": target.url}], [])
    agent = spawn_agent(cfg)
    await agent.ready()
    good = agent.config_path.read_text()
    agent.config_path.write_text(
        good.replace("url: " + target.url, "url: not-a-url") + "\nextra_section: 1\n"
    )
    agent.signal(signal.SIGHUP)
    body = await poll(lambda: health(agent), lambda h: h["last_reload"] is not None, what="last_reload")
    last = body["last_reload"]
    assert last["ok"] is False and len(last["errors"]) == 2, last
    assert any("checks[0].url" in e for e in last["errors"]) and any("extra_section" in e for e in last["errors"])
    assert body["status"] == "degraded"
    assert len(events(agent, "reload.invalid")) == 2
    hits = target.hits
    await wait_until(lambda: target.hits > hits + 2, 5, "the old config's check still running")

    agent.config_path.write_text(good)
    status, result = await post(agent, "/api/reload")
    assert status == 200 and result["ok"] is True and result["source"] == "api"
    body = await health(agent)
    assert body["last_reload"]["ok"] is True and body["status"] == "ok"


async def test_a_changed_notifier_sends_the_pending_events_once(spawn_agent) -> None:
    old, new = Receiver(), Receiver()
    old.status = 503  # takes nothing: every event stays pending, retried
    await old.start()
    await new.start()
    try:
        failing = free_port()
        cfg = agent_config([{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": failing}], [webhook(old)])
        agent = spawn_agent(cfg, ENV)
        await agent.ready()
        await wait_until(lambda: len(old.requests) >= 2, 10, "attempts at the failing receiver")
        agent.config["notifiers"] = [webhook(new)]
        agent.write_config()
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agent.cli", "reload", "-c", str(agent.config_path)],
            capture_output=True, text=True, cwd=agent.workdir, env={"PYTHONPATH": str(ROOT), "LG_SECRET": SECRET},
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert "notifiers changed ops" in done.stdout
        await wait_until(lambda: new.of("incident.opened"), 10, "the pending event at the new receiver")
        await asyncio.sleep(1.5)
        tried = {r["payload"]["event_id"] for r in old.requests}
        got = [e["event_id"] for e in new.events]
        assert tried <= set(got)  # nothing lost
        assert len(got) == len(set(got))  # nothing sent twice
        assert {r["headers"]["webhook-id"] for r in new.requests} == set(got)
        _, pending = await agent.api("/api/deliveries?status=pending")
        assert pending["deliveries"] == []
    finally:
        await old.stop()
        await new.stop()


async def test_api_reload_needs_the_token_marks_a_removed_notifiers_events_dead_and_keeps_listen(
    spawn_agent,
) -> None:
    down = Receiver()
    down.status = 503
    await down.start()
    try:
        failing = free_port()
        cfg = agent_config([{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": failing}], [webhook(down)])
        cfg["agent"]["api"]["token"] = "t0ken-for-reload"
        agent = spawn_agent(cfg, ENV)
        await agent.ready()
        await wait_until(lambda: down.requests, 10, "an attempt at the failing receiver")
        assert (await post(agent, "/api/reload"))[0] == 401
        agent.config["notifiers"] = []
        agent.config["agent"]["api"]["listen"] = f"127.0.0.1:{free_port()}"
        agent.write_config()
        status, result = await post(agent, "/api/reload", token="t0ken-for-reload")
        assert status == 200 and result["ok"] is True
        assert result["notifiers"]["removed"] == ["ops"]
        assert any("agent.api.listen" in line and "restart" in line for line in result["restart_needed"])
        assert events(agent, "reload.restart_needed")
        _, dead = await agent.api("/api/deliveries?status=dead", token="t0ken-for-reload")
        assert dead["deliveries"] and all(d["last_error"] == "notifier removed from the config"
                                          for d in dead["deliveries"])
        _, body = await agent.api("/health")  # still on the old address
        assert body["last_reload"]["restart_needed"]
    finally:
        await down.stop()


def test_reload_without_a_running_agent_says_so(tmp_path: Path) -> None:
    cfg = agent_config([], [])
    (tmp_path / "config.yaml").write_text(__import__("yaml").safe_dump(cfg))
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "reload", "-c", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, timeout=30,
    )
    assert done.returncode == 1 and "no agent answers" in done.stderr
