"""End to end with ``lifeguard run`` as a real subprocess, a real target and a real receiver."""

from __future__ import annotations

import asyncio
import json
import signal

from tests.fixtures_agent import SECRET, Receiver, agent_config, free_port, wait_until


def webhook(receiver: Receiver, name: str = "ops") -> dict:
    return {"name": name, "type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "1s"}


ENV = {"HOOK_SECRET": SECRET}


async def test_incident_opens_with_evidence_and_resolves(target, receiver, spawn_agent, payload_schema) -> None:
    cfg = agent_config(
        [{"name": "api", "type": "http", "url": target.url, "severity": "SEV-1",
          "headers": {"X-Api-Key": "k3y-that-must-not-leak"}}],
        [webhook(receiver)],
    )
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    await wait_until(lambda: target.hits >= 2, 10, "the target to be checked")
    assert receiver.requests == []

    target.status, target.body = 500, "database is down"
    opened = (await wait_until(lambda: receiver.of("incident.opened"), 10, "incident.opened"))[0]
    for e in receiver.events:
        payload_schema.validate(e)
    inc = opened["incident"]
    assert opened["schema"] == "lifeguard.incident/v1" and opened["sequence"] == 1
    assert inc["check"] == "api" and inc["status"] == "open"
    assert inc["severity"] == "critical" and inc["sev"] == "SEV-1"
    assert inc["title"] == "api failing: HTTP 500"
    assert [t["kind"] for t in inc["timeline"]] == ["opened"]
    ev = opened["evidence"]
    assert ev["phase"] == "opened"
    assert ev["response"]["status"] == 500 and "database is down" in ev["response"]["body"]
    assert any(not c["ok"] for c in ev["checks"]) and any(c["ok"] for c in ev["checks"])
    assert ev["host"]["memory"]["total"] > 0
    assert ev["url"] == f"http://{cfg['agent']['api']['listen']}/api/incidents/{inc['id']}/evidence"
    headers = receiver.requests[0]["headers"]
    assert headers["webhook-id"] == opened["event_id"]

    target.status, target.body = 200, "ok"
    resolved = (await wait_until(lambda: receiver.of("incident.resolved"), 10, "incident.resolved"))[0]
    payload_schema.validate(resolved)
    assert resolved["incident"]["id"] == inc["id"]
    assert resolved["incident"]["status"] == "resolved" and resolved["incident"]["resolved_at"]
    assert resolved["evidence"]["phase"] == "resolved"
    assert [e["sequence"] for e in receiver.events] == [1, 2]
    assert len(receiver.of("incident.opened")) == 1

    status, listed = await agent.api("/api/incidents?status=resolved")
    assert status == 200 and [i["id"] for i in listed["incidents"]] == [inc["id"]]
    status, full = await agent.api(f"/api/incidents/{inc['id']}")
    kinds = [t["kind"] for t in full["timeline"]]
    assert kinds[0] == "opened" and "resolved" in kinds and "notified" in kinds
    status, evidence = await agent.api(f"/api/incidents/{inc['id']}/evidence")
    assert status == 200 and evidence["opened"]["response"]["status"] == 500
    assert evidence["resolved"]["phase"] == "resolved"
    status, checks = await agent.api("/api/checks")
    assert checks["checks"][0]["name"] == "api" and checks["checks"][0]["state"] == "passing"

    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    logs = agent.log_events()
    opened_logs = [e for e in logs if e.get("event") == "incident.opened"]
    assert opened_logs and opened_logs[0]["check"] == "api" and opened_logs[0]["incident_id"] == inc["id"]
    assert any(e.get("event") == "delivery.delivered" for e in logs)
    everything = agent.log_text() + json.dumps(receiver.events) + json.dumps(evidence)
    assert "k3y-that-must-not-leak" not in everything
    assert SECRET not in everything


async def test_api_errors_and_health(target, receiver, spawn_agent) -> None:
    agent = spawn_agent(agent_config([{"name": "api", "type": "http", "url": target.url}], [webhook(receiver)]), ENV)
    await agent.ready()
    status, body = await agent.api("/health")
    assert status == 200 and body["status"] == "ok" and body["checks"] == 1 and body["outbox_pending"] == 0
    status, body = await agent.api("/api/incidents?status=bogus")
    assert status == 400 and body["error"]["code"] == "bad_parameter" and "status" in body["error"]["message"]
    status, body = await agent.api("/api/incidents?limit=-3")
    assert status == 400 and "limit" in body["error"]["message"]
    status, body = await agent.api("/api/incidents/not-an-id")
    assert status == 400 and body["error"]["code"] == "bad_id"
    status, body = await agent.api("/api/incidents/inc_0123456789abcdef/evidence")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await agent.api("/nope")
    assert status == 404 and "error" in body

    agent.signal(signal.SIGHUP)  # a reload of the same file: nothing changes, nothing stops
    await wait_until(lambda: "reload.applied" in agent.log_text(), 5, "the reload")
    assert (await agent.api("/health"))[0] == 200


async def test_api_token_guards_every_route_but_health(target, receiver, spawn_agent) -> None:
    cfg = agent_config([{"name": "api", "type": "http", "url": target.url}], [webhook(receiver)])
    cfg["agent"]["api"]["token"] = "t0ken-for-the-api"
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    assert (await agent.api("/health"))[0] == 200
    status, body = await agent.api("/api/incidents")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await agent.api("/api/incidents", token="wrong"))[0] == 401
    assert (await agent.api("/api/incidents", token="t0ken-for-the-api"))[0] == 200


async def test_crash_safety_sigkill_with_receiver_down(target, spawn_agent, payload_schema) -> None:
    """Receiver down, incident opens, SIGKILL, restart, receiver back: every event once, in order."""
    receiver = Receiver(port=free_port())  # not started: connection refused
    cfg = agent_config([{"name": "api", "type": "http", "url": target.url}], [webhook(receiver)])
    target.status = 500
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    await wait_until(
        lambda: any(e.get("event") == "delivery.retry" for e in agent.log_events()), 10, "a failed delivery"
    )
    status, listed = await agent.api("/api/incidents?status=open")
    first_id = listed["incidents"][0]["id"]
    agent.kill()

    again = spawn_agent(cfg, ENV)
    await again.ready()
    await receiver.start()
    try:
        opened = await wait_until(lambda: receiver.of("incident.opened"), 10, "the queued incident.opened")
        target.status = 200
        await wait_until(lambda: receiver.of("incident.resolved"), 10, "incident.resolved")
        events = receiver.events
        for e in events:
            payload_schema.validate(e)
        assert len(opened) == 1 and opened[0]["incident"]["id"] == first_id
        assert {e["incident"]["id"] for e in events} == {first_id}
        assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)
        ids = [e["event_id"] for e in events]
        assert len(ids) == len(set(ids)) == len(events)
        status, listed = await again.api("/api/incidents")
        assert [i["id"] for i in listed["incidents"]] == [first_id]  # no second incident
        assert not any(e.get("event") == "incident.opened" for e in again.log_events())
    finally:
        await receiver.stop()


async def test_sigterm_with_deliveries_pending_loses_nothing(target, spawn_agent) -> None:
    receiver = Receiver()
    receiver.hang = True
    await receiver.start()
    cfg = agent_config([{"name": "api", "type": "http", "url": target.url}], [webhook(receiver)])
    target.status = 500
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    await wait_until(lambda: receiver.requests, 10, "a delivery in flight")
    agent.signal(signal.SIGTERM)
    assert await agent.wait(timeout=15) == 0
    text = agent.log_text()
    assert "daemon.stopped" in text
    receiver.hang = False
    receiver.release.set()

    again = spawn_agent(cfg, ENV)
    await again.ready()
    opened = await wait_until(lambda: receiver.of("incident.opened"), 10, "incident.opened after restart")
    assert opened[0]["event_id"] == receiver.requests[0]["payload"]["event_id"]
    await receiver.stop()


async def test_a_hanging_check_never_delays_another(target, receiver, spawn_agent) -> None:
    from tests.fixtures_agent import Target

    hanging = Target()
    hanging.hang.set()  # its handler never answers
    await hanging.start()
    cfg = agent_config(
        [
            {"name": "stuck", "type": "http", "url": hanging.url, "timeout": "1s", "interval": "1s"},
            {"name": "api", "type": "http", "url": target.url},
        ],
        [webhook(receiver)],
        max_concurrent_checks=2,
    )
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    target.status = 500
    await wait_until(
        lambda: [e for e in receiver.of("incident.opened") if e["incident"]["check"] == "api"], 10, "api incident"
    )
    stuck = await wait_until(
        lambda: [e for e in receiver.of("incident.opened") if e["incident"]["check"] == "stuck"], 10, "stuck incident"
    )
    assert "timed out after 1s" in stuck[0]["incident"]["title"]
    # the api check kept its 200ms pace while the stuck one held its slot for a second each time
    api_results = [e for e in agent.log_events() if e.get("event") == "check.completed" and e.get("check") == "api"]
    assert len(api_results) >= 5
    await hanging.stop()


async def test_ten_megabyte_body_is_not_read(receiver, spawn_agent) -> None:
    from aiohttp import web

    sent = {"bytes": 0}

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=500)
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(160):
                await resp.write(chunk)
                sent["bytes"] += len(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    app = web.Application()
    app.router.add_get("/big", big)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        cfg = agent_config([{"name": "big", "type": "http", "url": f"http://127.0.0.1:{port}/big"}], [webhook(receiver)])
        agent = spawn_agent(cfg, ENV)
        await agent.ready()
        opened = (await wait_until(lambda: receiver.of("incident.opened"), 10, "incident.opened"))[0]
        response = opened["evidence"]["response"]
        assert response["status"] == 500 and response["body_truncated"] is True
        assert len(response["body"]) <= 4096
        assert sent["bytes"] < 10 * 1024 * 1024
    finally:
        await runner.cleanup()


async def test_file_notifier_appends_json_lines(target, spawn_agent, tmp_path) -> None:
    cfg = agent_config([{"name": "api", "type": "http", "url": target.url}], [{"name": "log", "type": "file"}])
    cfg["agent"]["api"]["public_url"] = "https://lifeguard.example.net/web-01/"
    target.status = 503
    agent = spawn_agent(cfg)
    await agent.ready()
    path = tmp_path / "state" / "events.jsonl"
    await wait_until(lambda: path.exists() and path.read_text().strip(), 10, "events.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["event"] == "incident.opened" and first["incident"]["check"] == "api"
    incident_id = first["incident"]["id"]
    assert first["evidence"]["url"] == f"https://lifeguard.example.net/web-01/api/incidents/{incident_id}/evidence"


async def test_removed_check_resolves_its_incident_at_start(target, receiver, spawn_agent) -> None:
    cfg = agent_config(
        [{"name": "api", "type": "http", "url": target.url},
         {"name": "other", "type": "tcp", "host": "127.0.0.1", "port": receiver.port}],
        [webhook(receiver)],
    )
    target.status = 500
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    await wait_until(lambda: receiver.of("incident.opened"), 10, "incident.opened")
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    cfg["checks"] = cfg["checks"][1:]
    again = spawn_agent(cfg, ENV)
    await again.ready()
    resolved = (await wait_until(lambda: receiver.of("incident.resolved"), 10, "incident.resolved"))[0]
    assert resolved["incident"]["resolve_reason"] == "check_removed"
    assert resolved["incident"]["check"] == "api"


async def test_once_and_check_config_commands(target, tmp_path) -> None:
    import subprocess
    import sys

    from tests.fixtures_agent import ROOT

    cfg = agent_config(
        [{"name": "api", "type": "http", "url": target.url},
         {"name": "closed", "type": "tcp", "host": "127.0.0.1", "port": free_port()}],
        [{"name": "log", "type": "file"}],
    )
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))

    async def cli(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, cwd=ROOT
        )

    ok = await cli("check-config", "-c", str(path))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ") and "2 checks" in ok.stdout
    once = await cli("once", "-c", str(path))
    assert once.returncode == 1
    lines = once.stdout.splitlines()
    assert lines[0].split()[:4] == ["CHECK", "TYPE", "TARGET", "STATUS"]
    assert any(line.startswith("api ") and " ok " in line for line in lines)
    assert any(line.startswith("closed ") and "FAILING" in line and "connection refused" in line for line in lines)
    target.status = 200
    cfg["checks"] = cfg["checks"][:1]
    path.write_text(yaml.safe_dump(cfg))
    assert (await cli("once", "-c", str(path))).returncode == 0

    cfg["checks"].append({"name": "api", "type": "tcp", "host": "127.0.0.1", "port": 70000, "interval": "fast"})
    path.write_text(yaml.safe_dump(cfg))
    bad = await cli("run", "-c", str(path))
    assert bad.returncode == 2
    assert "checks[1].interval: invalid duration 'fast'" in bad.stderr
    assert "checks[1].port" in bad.stderr and "checks[1].name" in bad.stderr

    secret = await cli("gen-secret")
    assert secret.returncode == 0 and secret.stdout.startswith("whsec_")
    from agent.signing import decode_secret

    assert len(decode_secret(secret.stdout.strip())) >= 24
    version = await cli("--version")
    assert version.stdout.strip() == "lifeguard 0.1.0"
