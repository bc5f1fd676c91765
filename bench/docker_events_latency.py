"""Time from a container's death to its heal, with Docker's events, whatever the check's interval.

    sudo .venv/bin/python bench/docker_events_latency.py [--rounds 10] [--interval 60]

Starts its own dockerd (as the tests do: no bridge, its own roots under /tmp; needs root, dockerd
and busybox-static), runs a container and an agent whose container check has a long interval,
``open_after: 0s`` and ``heal: restart_container``, then kills the container ``--rounds`` times.
Each round is read back from the agent's own record, all in wall-clock time:

- death: the engine's ``die`` event (``docker_events`` in the incident's evidence);
- heal decided: the incident's ``heal_attempted`` timeline entry (written with ``opened``, in the
  same transaction; the restart is started from there);
- restart sent: the opening evidence stored (its ``evidence.collected`` log line; the heal waits
  for it, so that the bundle shows the container as it died, then calls Docker);
- running again: the container's new ``StartedAt``.

Prints median and p95 of death → each. Polling alone would need up to one interval (here 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import fixtures_docker as fd  # noqa: E402
from tests.fixtures_agent import AgentProcess, agent_config, wait_until  # noqa: E402


def wall(text: str) -> float:
    """An ISO time (``…Z``, Docker's nanoseconds too) as epoch seconds."""
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text + "+00:00").timestamp()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def main(rounds: int, interval: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="lg-bench-", dir="/tmp"))
    engine = fd.Engine(root)
    engine.start()
    client = engine.client()
    agent: AgentProcess | None = None
    try:
        fd._import_test_image(client)
        name = fd.unique("bench")
        container = client.containers.run(fd.TEST_IMAGE, fd.SLEEP_FOREVER, name=name, detach=True,
                                          network_mode="host", labels={fd.TEST_LABEL: "1"})
        with tempfile.TemporaryDirectory() as tmp:
            cfg = agent_config(
                [{"name": "app", "type": "container", "container": name, "interval": f"{interval:g}s",
                  "timeout": "5s", "open_after": "0s", "resolve_after": 1,
                  "heal": {"restart_container": name, "max_restarts": rounds + 5, "within": "1h", "cooldown": "5s"}}],
                [],
            )
            cfg["docker"] = {"url": engine.url, "timeout": "5s"}
            cfg["agent"]["log_level"] = "info"
            agent = AgentProcess(Path(tmp), cfg)
            agent.start()
            await agent.ready()
            await wait_until(lambda: '"docker.events_open"' in agent.log_text(), 20, "the event stream")  # type: ignore[union-attr]
            decided, sent, running = [], [], []
            for n in range(rounds):
                await settled(agent, client, name)
                await asyncio.to_thread(container.kill)
                incident = await resolved_incident(agent, n + 1)
                evidence = (await agent.api(f"/api/incidents/{incident['id']}/evidence"))[1]["opened"]
                heal = next(t for t in incident["timeline"] if t["kind"] == "heal_attempted")
                # The container's recent events span rounds: this round's death is the last before the heal.
                death = max(wall(e["at"]) for e in evidence["container"]["docker_events"]
                            if e["action"] == "die" and wall(e["at"]) <= wall(heal["at"]))
                decided.append(wall(heal["at"]) - death)
                collected = next(e["timestamp"] for e in agent.log_events() if e.get("event") == "evidence.collected"
                                 and e.get("incident_id") == incident["id"] and e.get("phase") == "opened")
                sent.append(wall(collected) - death)
                started = (await asyncio.to_thread(client.api.inspect_container, name))["State"]["StartedAt"]
                running.append(wall(started) - death)
            if "--trace" in sys.argv:
                for e in agent.log_events()[-60:]:
                    if e.get("event") in ("docker.event", "check.completed", "check.failing", "incident.opened", "heal.attempted", "evidence.collected", "heal.restart", "check.recovered"):
                        print(e["timestamp"], e["event"], e.get("action"), e.get("duration_ms"), e.get("message"))
            print(f"rounds={rounds} check interval={interval:g}s open_after=0s (death = the engine's die event)")
            for label, values in (("heal decided (heal_attempted)", decided),
                                  ("restart sent (after the opening evidence)", sent),
                                  ("container running again", running)):
                print(f"death -> {label:<42} median {statistics.median(values) * 1000:6.0f} ms"
                      f"   p95 {p95(values) * 1000:6.0f} ms   max {max(values) * 1000:6.0f} ms")
    finally:
        if agent is not None:
            agent.kill()
        client.close()
        engine.stop(remove_containers=True)
        fd._unmount_under(root)
        import shutil

        shutil.rmtree(root, ignore_errors=True)


async def settled(agent: AgentProcess, client: Any, name: str) -> None:
    """The container runs and the check passes (the last round's restart is over)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = (await asyncio.to_thread(client.api.inspect_container, name))["State"]
        checks = (await agent.api("/api/checks"))[1]["checks"]
        if state["Running"] and checks[0]["state"] == "passing":
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the container did not settle within 30 s")


async def resolved_incident(agent: AgentProcess, count: int) -> dict[str, Any]:
    """The ``count``-th incident of the run, once it resolved."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = (await agent.api("/api/incidents?limit=100"))[1]["incidents"]
        if len(listed) >= count and listed[0]["status"] == "resolved":
            return (await agent.api(f"/api/incidents/{listed[0]['id']}"))[1]  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise SystemExit(f"incident #{count} did not resolve within 30 s:\n{agent.log_text()[-3000:]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.interval))
