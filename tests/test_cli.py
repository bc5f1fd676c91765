"""Argument parsing of the `lifeguard` command (the commands themselves run in test_e2e), and
what ``run`` says at start about a config file that exposes secrets."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from agent.cli import _parser
from tests.fixtures_agent import SECRET, AgentProcess, agent_config


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["once"], None),
        (["--log-level", "debug", "once"], "debug"),
        (["once", "--log-level", "error"], "error"),
        (["--log-level", "debug", "run", "-c", "x.yaml"], "debug"),
        (["gen-secret", "--log-level", "warning"], "warning"),
    ],
)
def test_log_level_is_accepted_before_or_after_the_command(argv: list[str], level: str | None) -> None:
    assert getattr(_parser().parse_args(argv), "log_level", None) == level


def test_run_options() -> None:
    args = _parser().parse_args(["run", "--no-heal", "-c", "/etc/lifeguard/config.yaml"])
    assert args.no_heal and args.config == "/etc/lifeguard/config.yaml"
    assert not args.move_corrupt_db
    assert _parser().parse_args(["run", "--move-corrupt-db"]).move_corrupt_db


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args([])
    assert exc.value.code == 2 and "COMMAND" in capsys.readouterr().err


async def test_once_runs_at_most_max_concurrent_checks_at_a_time() -> None:
    import asyncio
    from types import SimpleNamespace

    from agent.cli import run_all
    from checks.base import Check, CheckContext, Outcome

    gate, running = asyncio.Event(), []

    class Held(Check):
        type = "held"

        @property
        def target(self) -> str:
            return self.name

        async def probe(self) -> Outcome:
            running.append(self.name)
            await gate.wait()
            return Outcome(True, "ok")

    checks = [Held(SimpleNamespace(name=f"c{i}", timeout=5.0, interval=60.0), CheckContext()) for i in range(5)]
    runs = asyncio.create_task(run_all(checks, max_concurrent=2))
    for _ in range(20):
        await asyncio.sleep(0)
    assert running == ["c0", "c1"]
    gate.set()
    results = await runs
    assert [r.check for r in results] == [f"c{i}" for i in range(5)] and all(r.ok for r in results)


async def test_once_takes_its_cap_from_agent_max_concurrent_checks(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    import yaml
    from aiohttp import web

    from agent.cli import _once
    from agent.config import load_config
    from tests.fixtures_agent import LocalServer, agent_config

    class Counting(LocalServer):
        """Holds each request until a second one arrives (bounded), counting requests in flight."""

        def __init__(self) -> None:
            super().__init__()
            self.in_flight = self.most = 0
            self.overlap = asyncio.Event()

        async def _hit(self, request: web.Request) -> web.Response:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            if self.in_flight > 1:
                self.overlap.set()
            try:
                await asyncio.wait_for(self.overlap.wait(), 0.3)
            except TimeoutError:
                pass
            self.in_flight -= 1
            return web.Response(text="ok")

        def routes(self, app: web.Application) -> None:
            app.router.add_get("/", self._hit)

    server = Counting()
    await server.start()
    try:
        for cap, most in ((1, 1), (3, 3)):
            server.most, server.overlap = 0, asyncio.Event()
            checks = [{"name": f"c{i}", "type": "http", "url": f"http://127.0.0.1:{server.port}/"} for i in range(3)]
            path = tmp_path / f"cap{cap}.yaml"
            cfg = agent_config(checks, [], max_concurrent_checks=cap)
            cfg["defaults"].update(interval="5s", timeout="2s")
            path.write_text(yaml.safe_dump(cfg))
            assert await _once(load_config(path)) == 0
            assert server.most == most, cap
    finally:
        await server.stop()
    assert "3 passing, 0 failing" in capsys.readouterr().out


def hooked(secret: str) -> dict[str, Any]:
    return agent_config([], [{"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": secret}])


async def run_with_mode(tmp_path: Path, config: dict[str, Any], mode: int, env: dict[str, str] | None = None) -> Any:
    """Start ``lifeguard run`` on a config file of ``mode``, stop it with SIGTERM; its log events."""
    agent = AgentProcess(tmp_path, config, env)
    agent.write_config()
    agent.config_path.chmod(mode)
    agent.write_config = lambda: None  # type: ignore[method-assign]  # keep the mode just set
    agent.start()
    try:
        await agent.ready()
        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        agent.kill()
    return [e for e in agent.log_events() if e.get("event") == "config.readable_by_others"]


async def test_a_config_readable_by_others_that_holds_a_secret_is_warned_about(tmp_path: Path) -> None:
    [warning] = await run_with_mode(tmp_path, hooked(SECRET), 0o644)
    path = tmp_path / "config.yaml"
    assert warning["file"] == str(path) and warning["mode"] == "0644" and warning["level"] == "warning"
    assert warning["fix"] == f"chmod 640 {path} (or 600), or move the secrets to the environment as ${{VAR}}"


@pytest.mark.parametrize(
    ("mode", "secret_in_file"), [(0o640, True), (0o600, True), (0o644, False)], ids=["640", "600", "secret from env"]
)
async def test_no_warning_when_the_file_is_private_or_holds_no_secret(tmp_path: Path, mode: int, secret_in_file: bool) -> None:
    config = hooked(SECRET if secret_in_file else "${HOOK_SECRET}")
    assert await run_with_mode(tmp_path, config, mode, {"HOOK_SECRET": SECRET}) == []
