"""``lifeguard run``'s lifecycle as a real subprocess with real signals: slow starts, failed
starts, a second signal, SIGHUP."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from typing import Any

from tests.fixtures_agent import SECRET, Receiver, agent_config, free_port, wait_until
from tests.fixtures_docker import SilentDocker


def events(agent: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in agent.log_events() if e.get("event") == name]


def hung_docker_config(docker: SilentDocker) -> dict[str, Any]:
    cfg = agent_config([{"name": "app", "type": "container", "container": "app"}], [])
    cfg["docker"] = {"url": docker.url, "timeout": "60s"}
    return cfg


async def test_sigterm_while_docker_hangs_at_start_exits_0_promptly(silent_docker, spawn_agent) -> None:
    agent = spawn_agent(hung_docker_config(silent_docker))
    await asyncio.wait_for(silent_docker.connected.wait(), 20)  # the agent is waiting on Docker
    agent.signal(signal.SIGTERM)
    began = time.monotonic()
    assert await agent.wait(timeout=10) == 0
    assert time.monotonic() - began < 5  # far less than docker.timeout (60 s)
    assert [e["component"] for e in events(agent, "lifecycle.start_interrupted")] == ["clients"]
    assert not events(agent, "daemon.started")
    steps = [e["step"] for e in events(agent, "daemon.shutdown")]
    assert steps == ["close database"]  # only the store had started
    assert events(agent, "daemon.stopped")[0]["events_pending"] == 0


async def test_sighup_during_a_slow_start_does_not_kill_the_agent(silent_docker, spawn_agent) -> None:
    agent = spawn_agent(hung_docker_config(silent_docker))
    await asyncio.wait_for(silent_docker.connected.wait(), 20)
    agent.signal(signal.SIGHUP)
    await wait_until(lambda: events(agent, "daemon.reload_unsupported"), 5, "the SIGHUP warning")
    assert agent.proc.poll() is None
    agent.signal(signal.SIGINT)
    assert await agent.wait(timeout=10) == 0


async def test_a_second_sigterm_exits_at_once_with_code_1(target, spawn_agent) -> None:
    receiver = Receiver()
    receiver.hang = True  # takes the delivery and never answers: the shutdown waits its 5 s for it
    await receiver.start()
    try:
        target.status = 500
        cfg = agent_config(
            [{"name": "api", "type": "http", "url": target.url}],
            [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "60s"}],
        )
        agent = spawn_agent(cfg, {"HOOK_SECRET": SECRET})
        await agent.ready()
        await wait_until(lambda: receiver.requests, 10, "a delivery in flight")
        agent.signal(signal.SIGTERM)
        await wait_until(
            lambda: [e for e in events(agent, "daemon.shutdown") if e["step"] == "in-flight deliveries"],
            5, "the shutdown to wait for the delivery",
        )
        agent.signal(signal.SIGTERM)
        began = time.monotonic()
        assert await agent.wait(timeout=5) == 1
        assert time.monotonic() - began < 2
        forced = events(agent, "daemon.forced_exit")
        assert forced and forced[0]["signal"] == "SIGTERM" and forced[0]["exit_code"] == 1
        assert not events(agent, "daemon.stopped")
    finally:
        receiver.release.set()
        await receiver.stop()


async def test_a_start_that_fails_exits_1_after_closing_what_started(target, spawn_agent) -> None:
    cfg = agent_config([{"name": "api", "type": "http", "url": target.url}], [])
    port = int(cfg["agent"]["api"]["listen"].rsplit(":", 1)[1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        agent = spawn_agent(cfg)
        assert await agent.wait(timeout=20) == 1
    failed = events(agent, "lifecycle.start_failed")
    assert failed and failed[0]["component"] == "api"
    assert [e["step"] for e in events(agent, "daemon.shutdown")] == ["flush results", "close clients", "close database"]
    stopped = events(agent, "daemon.stopped")[0]
    assert stopped["reason"].startswith("api failed to start:")
    assert not events(agent, "daemon.started")


async def test_sigterm_stops_every_part_in_the_documented_order(target, spawn_agent) -> None:
    agent = spawn_agent(agent_config([{"name": "api", "type": "http", "url": target.url}], [], api={"listen": f"127.0.0.1:{free_port()}"}))
    await agent.ready()
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    steps = [(e["step"], e["grace_s"]) for e in events(agent, "daemon.shutdown")]
    assert [s for s, _ in steps] == [
        "stop scheduling", "finish heals and evidence", "in-flight deliveries",
        "close API", "flush results", "close clients", "close database",
    ]
    assert dict(steps)["finish heals and evidence"] == 5.0 and dict(steps)["in-flight deliveries"] == 5.0
    stopped = events(agent, "daemon.stopped")[0]
    assert stopped["reason"] == "signal SIGTERM" and stopped["events_pending"] == 0
