"""Real parts for end-to-end tests: the agent as a subprocess, HTTP targets, webhook receivers.

Everything listens on 127.0.0.1. The agent runs as ``python -m agent.cli run`` (what the
``lifeguard`` console script calls), gets real signals, and logs JSON to a file we read back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll a cheap predicate (no I/O) until it is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def poll(
    probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], bound: float = 15.0, what: str = "a condition"
) -> Any:
    """Await ``probe`` until ``done`` holds for its value; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + bound
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {bound}s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(0.05)


class LocalServer:
    """A real aiohttp server on 127.0.0.1; subclasses add their routes."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.release = asyncio.Event()  # lets hanging handlers finish at stop
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner:
            await self._runner.cleanup()
            self._runner = None


class Target(LocalServer):
    """An HTTP service whose /health answers what the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.body = "ok"
        self.hang = asyncio.Event()  # set() => handlers hang until released
        self.hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    async def _health(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.hang.is_set():
            await self.release.wait()
        return web.Response(status=self.status, text=self.body)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)


class Receiver(LocalServer):
    """A webhook receiver that verifies Standard Webhooks signatures and keeps every request."""

    def __init__(self, port: int | None = None, secret: str = SECRET) -> None:
        from standardwebhooks.webhooks import Webhook

        super().__init__(port)
        self.verifier = Webhook(secret)
        self.requests: list[dict[str, Any]] = []  # every verified request, in arrival order
        self.status = 200
        self.hang = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def events(self) -> list[dict[str, Any]]:
        """Payloads answered 2xx, in arrival order."""
        return [r["payload"] for r in self.requests if r["answered"] < 300]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.verifier.verify(body, headers)  # raises on a bad signature -> 500 and test fails below
        entry = {"payload": json.loads(body), "headers": headers, "answered": self.status, "verified": True}
        if self.hang:
            entry["answered"] = 599
            self.requests.append(entry)
            await self.release.wait()
            return web.Response(status=200)
        self.requests.append(entry)
        return web.Response(status=self.status, text="{}")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)


class AgentProcess:
    """``lifeguard run`` as a real subprocess."""

    def __init__(
        self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None, number: int = 1
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.env = env or {}
        self.api_port = int(config["agent"]["api"]["listen"].rsplit(":", 1)[1])
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / f"agent-{number}.log"  # one per process: restarts are told apart
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self) -> None:
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIFEGUARD_")}
        env.update(self.env, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(self.config_path), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
        )
        log.close()

    async def ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log_text()}")
                try:
                    async with s.get(f"http://127.0.0.1:{self.api_port}/health") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"agent not ready after {timeout}s:\n{self.log_text()}")

    async def api(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{self.api_port}{path}", headers=headers) as r:
                return r.status, await r.json()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"agent still running after {timeout}s:\n{self.log_text()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def agent_config(
    checks: list[dict[str, Any]],
    notifiers: list[dict[str, Any]],
    *,
    state_dir: str = "state",
    **agent: Any,
) -> dict[str, Any]:
    """A config for fast tests: sub-second intervals and retries."""
    return {
        "agent": {
            "name": "test-agent",
            "state_dir": state_dir,
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "log_level": "debug",
            "delivery": {"retry_initial": "200ms", "retry_max": "1s", "evidence_wait": "2s"},
            **agent,
        },
        "defaults": {"interval": "200ms", "timeout": "1s", "open_after": "0s", "resolve_after": 2},
        "checks": checks,
        "notifiers": notifiers,
    }


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    await t.start()
    yield t
    await t.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
def spawn_agent(tmp_path: Path) -> Any:
    """Start agents in tmp_path; every one still running at teardown is killed."""
    started: list[AgentProcess] = []

    def spawn(config: dict[str, Any], env: dict[str, str] | None = None, args: list[str] | None = None) -> AgentProcess:
        agent = AgentProcess(tmp_path, config, env, number=len(started) + 1)
        agent.extra_args = args or []
        agent.start()
        started.append(agent)
        return agent

    yield spawn
    for agent in started:
        agent.kill()


@pytest.fixture
async def running_store(tmp_path: Path) -> AsyncIterator[Any]:
    """A real SQLite store, opened on its own thread as the daemon does."""
    from agent.store import Store

    store = Store(tmp_path / "lifeguard.db", agent_info={"name": "t", "version": "0.1.0"})
    await store.run(store.open)
    yield store
    await store.aclose()


@pytest.fixture
def payload_schema() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads((ROOT / "agent" / "schemas" / "incident-v1.schema.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
