"""``lifeguard status`` against a real running agent (ok, degraded, with a wrong token) and against
none or something that is not an agent: its one screen and its exit code (Docker's HEALTHCHECK)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli_ops import _duration, status_lines
from tests.fixtures_agent import ROOT, agent_config, free_port, poll


async def lifeguard_status(config: dict[str, Any], path: Path) -> tuple[int, str, str]:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "status", "-c", str(path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_running_agent_is_summed_up_in_one_screen(target, spawn_agent, tmp_path) -> None:
    cfg = agent_config(
        [
            {"name": "web", "type": "http", "url": target.url},
            {"name": "db", "type": "tcp", "host": "127.0.0.1", "port": free_port(), "severity": "critical"},
        ],
        [],
        api={"listen": f"127.0.0.1:{free_port()}", "token": "s3cret-token-for-status"},
    )
    agent = spawn_agent(cfg)
    await agent.ready()
    await poll(
        lambda: agent.api("/api/incidents?status=open", token="s3cret-token-for-status"),
        lambda answer: len(answer[1]["incidents"]) == 1 and answer[1]["incidents"][0]["check"] == "db",
        what="the incident of db",
    )
    code, out, err = await lifeguard_status(cfg, tmp_path / "status.yaml")
    assert (code, err) == (0, ""), out
    lines = out.splitlines()
    assert lines[0] == f"lifeguard 0.1.0 at http://{cfg['agent']['api']['listen']}: ok"
    assert lines[1].startswith("  agent       test-agent, up ")
    assert lines[2].startswith("  checks      2, 1 failing (db), ")
    assert lines[3] == "  incidents   1 open"
    assert lines[4] == "                SEV-1 db: db failing: connection refused"
    assert lines[5] == "  outbox      0 pending, 0 dead"
    assert len(lines) == 6
    assert "s3cret" not in out

    # A token that the agent does not take: /health still tells that it serves, the rest is unknown.
    wrong = dict(cfg, agent=dict(cfg["agent"], api=dict(cfg["agent"]["api"], token="not-the-token")))
    code, out, _ = await lifeguard_status(wrong, tmp_path / "wrong.yaml")
    assert code == 0
    assert "  checks      2 (failing: unknown, HTTP 401)" in out and "  incidents   unknown (HTTP 401)" in out
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0


async def test_a_degraded_agent_still_serves_and_says_why(spawn_agent, tmp_path) -> None:
    cfg = agent_config([{"name": "app", "type": "container", "container": "app"}], [])
    cfg["docker"] = {"url": f"unix://{tmp_path}/no-docker.sock", "timeout": "2s"}
    agent = spawn_agent(cfg)
    await agent.ready()
    await poll(lambda: agent.api("/health"), lambda answer: answer[1]["status"] == "degraded", what="degraded")
    code, out, err = await lifeguard_status(cfg, tmp_path / "status.yaml")
    assert (code, err) == (0, ""), out
    assert out.splitlines()[0].endswith(": DEGRADED (serving, with problems)")
    assert "  problems\n    - docker unreachable: Docker unreachable at unix://" in out
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0


async def test_no_agent_answers(tmp_path) -> None:
    cfg = agent_config([], [])
    code, out, err = await lifeguard_status(cfg, tmp_path / "status.yaml")
    assert (code, out) == (1, "")
    assert f"lifeguard: no agent answers at http://{cfg['agent']['api']['listen']} (connection refused)" in err


async def test_something_else_on_the_port_is_no_agent(target, tmp_path) -> None:
    cfg = agent_config([], [], api={"listen": f"127.0.0.1:{target.port}"})  # serves /health, as text
    code, out, err = await lifeguard_status(cfg, tmp_path / "status.yaml")
    assert (code, out) == (1, "")
    assert "not a Lifeguard agent?" in err


def test_the_screen_names_at_most_five_failing_checks_and_incidents() -> None:
    checks = {"checks": [{"name": f"c{i}", "state": "failing"} for i in range(7)] + [{"name": "new", "state": "unknown"}]}
    incidents = {"incidents": [{"sev": "SEV2", "check": f"c{i}", "title": f"c{i} is failing"} for i in range(7)]}
    health = {"status": "ok", "version": "0.1.0", "agent": "a", "uptime_s": 93784.2, "checks_running": 2,
              "outbox_pending": 3, "outbox_dead": 1, "problems": []}
    lines = status_lines("http://127.0.0.1:9810", health, checks, incidents)
    assert lines[1] == "  agent       a, up 1d 2h"
    assert lines[2] == "  checks      8, 7 failing (c0, c1, c2, c3, c4 and 2 more), 1 not run yet, 2 running now"
    assert lines[3:10] == [
        "  incidents   7 open",
        *[f"                SEV2 c{i}: c{i} is failing" for i in range(5)],
        "                and 2 more (GET /api/incidents?status=open)",
    ]
    assert lines[10] == "  outbox      3 pending, 1 dead"


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (45.7, "45s"), (125, "2m 5s"), (3605, "1h 0m"), (90061, "1d 1h")]
)
def test_duration(seconds: float, shown: str) -> None:
    assert _duration(seconds) == shown
