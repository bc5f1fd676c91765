"""Heal time against a real Docker engine, for bench/scale.py ``--docker``.

A dockerd of its own (the test set-up's ``Engine``: no bridge, its own roots under /tmp), the
busybox test image, one container serving HTTP on the host network, and the agent with one
``http`` check on it (interval 1 s, ``open_after: 0s``, ``resolve_after: 1``, ``heal``
restarting the container). Each round kills the container and times, from the kill: the
incident.opened received, the container running again (its ``State.StartedAt``), and the
incident.resolved received, i.e. the first passing check after the restart: the heal time.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from common import ROOT, free_port, pin, start_agent, stop_process

sys.path.insert(0, str(ROOT))


def started_at(stamp: str) -> float:
    """Docker's RFC 3339 time with nanoseconds, as epoch seconds."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


async def heal_times(receiver: Any, receiver_url: str, rounds: int, cpu: int | None,
                     ready: Any) -> dict[str, Any]:
    """``ready(proc, port)`` waits for the agent's API; returns the medians and every round."""
    from tests.fixtures_docker import TEST_IMAGE, Engine, _import_test_image, _unmount_under

    root = Path(tempfile.mkdtemp(prefix="lg-bench-docker-", dir="/tmp"))  # short: a unix socket path
    engine = Engine(root)
    try:
        try:
            await asyncio.to_thread(engine.start)
        except BaseException as exc:  # the test set-up skips (a BaseException) when it cannot start one
            if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
                raise
            return {"error": f"no Docker engine: {exc}"}
        client = engine.client(timeout=30)
        await asyncio.to_thread(_import_test_image, client)
        port, name = free_port(), f"lg-bench-{uuid.uuid4().hex[:8]}"
        serve = f"mkdir -p /www && echo ok > /www/health && exec httpd -f -p 127.0.0.1:{port} -h /www"
        await asyncio.to_thread(lambda: client.containers.run(
            TEST_IMAGE, ["sh", "-c", serve], name=name, detach=True, network_mode="host"))
        return await _rounds(engine.url, client, name, port, receiver, receiver_url, rounds, cpu, ready)
    finally:
        await asyncio.to_thread(engine.stop, remove_containers=True)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


async def _rounds(docker_url: str, client: Any, name: str, port: int, receiver: Any, receiver_url: str,
                  rounds: int, cpu: int | None, ready: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lifeguard-bench-heal-") as tmp:
        work, api_port = Path(tmp), free_port()
        config = {
            "agent": {"name": "bench-heal", "state_dir": "state", "log_level": "warning",
                      "api": {"listen": f"127.0.0.1:{api_port}", "token": "bench-token"}},
            "docker": {"url": docker_url, "timeout": "5s"},
            "checks": [{"name": "app", "type": "http", "url": f"http://127.0.0.1:{port}/health", "interval": "1s",
                        "timeout": "1s", "open_after": "0s", "resolve_after": 1, "container": name,
                        "heal": {"max_restarts": rounds + 2, "within": "1h", "cooldown": "1s"}}],
            "notifiers": [{"name": "bench", "type": "webhook", "url": receiver_url}],
        }
        proc = start_agent(work, config, work / "agent.log")
        pin(proc.pid, cpu)
        done: list[dict[str, float]] = []
        try:
            await ready(proc, api_port, work / "agent.log")
            await asyncio.sleep(3)  # a first passing check
            for _ in range(rounds):
                start = len(receiver.events)
                t_kill = time.time()
                await asyncio.to_thread(lambda: client.containers.get(name).kill())
                got = await _until_resolved(receiver, start, 30)
                state = await asyncio.to_thread(lambda: client.api.inspect_container(name)["State"])
                if got is None:
                    break
                done.append({
                    "opened": got["incident.opened"] - t_kill,
                    "running_again": started_at(state["StartedAt"]) - t_kill,
                    "resolved": got["incident.resolved"] - t_kill,
                })
                await asyncio.sleep(2)  # past the heal cooldown
        finally:
            await asyncio.to_thread(stop_process, proc)
    return {
        "rounds": rounds, "healed": len(done),
        **{f"{key}_median": statistics.median(r[key] for r in done) if done else None
           for key in ("opened", "running_again", "resolved")},
        "each": done,
    }


async def _until_resolved(receiver: Any, start: int, bound: float) -> dict[str, float] | None:
    """Arrival times of the first incident.opened and incident.resolved after event number ``start``."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        seen: dict[str, float] = {}
        for at, payload in receiver.events[start:]:
            seen.setdefault(payload.get("event"), at)
        if "incident.opened" in seen and "incident.resolved" in seen:
            return seen
        await asyncio.sleep(0.02)
    return None
