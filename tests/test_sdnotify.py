"""The notify protocol against a real ``AF_UNIX`` datagram socket, as systemd opens it: a real
agent subprocess says READY=1 once its API answers, pings the watchdog, keeps STATUS= current,
says RELOADING=1/READY=1 around SIGHUP and STOPPING=1 on SIGTERM; a blocked loop stops the pings."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.sdnotify import SystemdNotify, socket_address, status_line, watchdog_period
from tests.fixtures_agent import agent_config, free_port, wait_until

WATCHDOG_USEC = 400_000  # the agent pings every 0.2 s


class NotifySocket:
    """What systemd listens on: a datagram socket whose messages are kept with their arrival time."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def env(self) -> str:
        """``$NOTIFY_SOCKET`` for this address."""
        if isinstance(self.address, bytes):
            return "@" + self.address[1:].decode()
        return self.address

    def attach(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def attach_thread(self) -> None:
        """Read on a thread of its own, so arrival times stay true while the test's loop is blocked."""

        def run() -> None:
            while not self._closed:
                if select.select([self.sock], [], [], 0.05)[0]:
                    self._read()

        self._thread = threading.Thread(target=run, name="notify-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._thread.join(5)
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        except (RuntimeError, ValueError):
            pass
        self.sock.close()

    def with_key(self, key: str, since: float = 0.0) -> list[tuple[float, dict[str, str]]]:
        return [(at, m) for at, m in self.messages if key in m and at >= since]

    def statuses(self) -> list[str]:
        return [m["STATUS"] for _, m in self.messages if "STATUS" in m]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose paths fit in an AF_UNIX address (108 bytes), unlike pytest's tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="lg-sd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def notify_socket(short_dir: Path) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(str(short_dir / "notify"))
    sock.attach()
    yield sock
    sock.close()


@pytest.fixture
async def abstract_socket() -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(b"\0lifeguard-test-" + uuid.uuid4().hex.encode())
    sock.attach()
    yield sock
    sock.close()


def notify_env(sock: NotifySocket, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": sock.env, "WATCHDOG_USEC": str(WATCHDOG_USEC), **extra}


async def answers(port: int) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
            async with s.get(f"http://127.0.0.1:{port}/health") as r:
                return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def pings(sock: NotifySocket, since: float = 0.0, until: float = float("inf")) -> list[float]:
    return [at for at, m in sock.with_key("WATCHDOG", since) if m["WATCHDOG"] == "1" and at <= until]


async def test_ready_only_once_the_api_answers_and_every_check_is_scheduled(notify_socket, target, spawn_agent) -> None:
    cfg = agent_config([{"name": "web", "type": "http", "url": target.url}], [])
    agent = spawn_agent(cfg, env=notify_env(notify_socket))
    await wait_until(lambda: notify_socket.with_key("READY"), 20, "READY=1")
    first = notify_socket.messages[0][1]
    assert first["READY"] == "1", "READY=1 is the first message"
    assert first["STATUS"].startswith("1 check, ")
    # Said only once everything had started: the API answers at once and the scheduler is running.
    assert await answers(agent.api_port)
    started = [e["component"] for e in agent.log_events() if e.get("event") == "lifecycle.started"]
    assert started[-2:] == ["scheduler", "systemd"]
    assert [e for e in agent.log_events() if e.get("event") == "systemd.notify"][0]["watchdog_s"] == 0.4
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    assert len(notify_socket.with_key("READY")) == 1


async def test_watchdog_pings_every_half_period_and_stop_with_stopping(notify_socket, target, spawn_agent) -> None:
    cfg = agent_config([{"name": "web", "type": "http", "url": target.url}], [])
    agent = spawn_agent(cfg, env=notify_env(notify_socket))
    await wait_until(lambda: notify_socket.with_key("READY"), 20, "READY=1")
    began = time.monotonic()
    await asyncio.sleep(2.0)
    seen = pings(notify_socket, since=began)
    assert len(seen) >= 6, seen  # ten expected at 0.2 s; a busy machine may lose a few
    assert max(b - a for a, b in zip(seen, seen[1:], strict=False)) < 0.4 * 1.5  # well within the timeout
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    stopping = notify_socket.with_key("STOPPING")
    assert len(stopping) == 1 and stopping[0][1]["STOPPING"] == "1"
    assert not pings(notify_socket, since=stopping[0][0] + 0.001), "no ping after STOPPING=1"


async def test_status_follows_the_checks_and_incidents_and_is_sent_on_change_only(
    notify_socket, target, spawn_agent
) -> None:
    cfg = agent_config(
        [
            {"name": "web", "type": "http", "url": target.url},
            {"name": "db", "type": "tcp", "host": "127.0.0.1", "port": free_port()},  # nothing listens
        ],
        [],
    )
    agent = spawn_agent(cfg, env=notify_env(notify_socket))
    await wait_until(
        lambda: "2 checks, 1 failing, 1 open incident, 0 events pending" in notify_socket.statuses(), 20, "one failing"
    )
    target.status = 503
    await wait_until(
        lambda: "2 checks, 2 failing, 2 open incidents, 0 events pending" in notify_socket.statuses(), 20, "both failing"
    )
    await asyncio.sleep(1.5)  # nothing changes any more: nothing more is sent
    updates = [m["STATUS"] for _, m in notify_socket.messages if "STATUS" in m and "READY" not in m]
    assert all(a != b for a, b in zip(updates, updates[1:], strict=False)), updates
    assert updates[-1] == "2 checks, 2 failing, 2 open incidents, 0 events pending"
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0


async def test_sighup_says_reloading_with_the_monotonic_time_then_ready(notify_socket, target, spawn_agent) -> None:
    agent = spawn_agent(agent_config([{"name": "web", "type": "http", "url": target.url}], []), env=notify_env(notify_socket))
    await wait_until(lambda: notify_socket.with_key("READY"), 20, "READY=1")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    agent.signal(signal.SIGHUP)
    await wait_until(lambda: len(notify_socket.with_key("READY")) == 2, 10, "READY=1 after the reload")
    reloading = notify_socket.with_key("RELOADING")
    assert len(reloading) == 1
    at, message = reloading[0]
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(message["MONOTONIC_USEC"]) <= after  # the same clock as systemd's
    assert at <= notify_socket.with_key("READY")[1][0]
    assert await answers(agent.api_port)
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0


async def test_an_abstract_socket_works_too(abstract_socket, target, spawn_agent) -> None:
    assert abstract_socket.env.startswith("@lifeguard-test-")
    agent = spawn_agent(agent_config([{"name": "web", "type": "http", "url": target.url}], []), env=notify_env(abstract_socket))
    await wait_until(lambda: len(pings(abstract_socket)) >= 3, 20, "READY=1 and pings on the abstract socket")
    assert abstract_socket.messages[0][1]["READY"] == "1"
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    assert abstract_socket.with_key("STOPPING")


async def test_a_stopped_agent_stops_pinging_and_resumes_when_continued(notify_socket, target, spawn_agent) -> None:
    agent = spawn_agent(agent_config([{"name": "web", "type": "http", "url": target.url}], []), env=notify_env(notify_socket))
    await wait_until(lambda: len(pings(notify_socket)) >= 3, 20, "the first pings")
    agent.signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        await asyncio.sleep(1.5)  # the watchdog timeout is 0.4 s: systemd would have acted long before
        silent = pings(notify_socket, since=stopped + 0.05)  # a datagram in flight at the stop may land
        assert silent == [], f"{len(silent)} pings from a stopped process"
    finally:
        agent.signal(signal.SIGCONT)
    resumed = time.monotonic()
    await wait_until(lambda: len(pings(notify_socket, since=resumed)) >= 3, 10, "pings after SIGCONT")
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0


async def test_without_notify_socket_the_agent_says_nothing(target, spawn_agent, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)  # the suite may itself run under systemd
    agent = spawn_agent(agent_config([{"name": "web", "type": "http", "url": target.url}], []))
    await agent.ready()
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    assert not [e for e in agent.log_events() if e.get("event", "").startswith("systemd.")]


# -- in process: the loop itself sends the pings --------------------------------------------------
async def _spawn_owned(tasks: list[asyncio.Task[Any]]) -> Any:
    def spawn(name: str, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        tasks.append(task)
        return task

    return spawn


async def test_a_blocked_event_loop_sends_no_ping(short_dir) -> None:
    """A thread would go on pinging while the loop is wedged; the component must not. The socket is
    read on a thread here, so the arrival times are true while this loop is blocked."""
    sock = NotifySocket(str(short_dir / "notify"))
    sock.attach_thread()
    tasks: list[asyncio.Task[Any]] = []
    env = {"NOTIFY_SOCKET": sock.env, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}
    sd = SystemdNotify(lambda: "fine", await _spawn_owned(tasks), env=env)
    try:
        await sd.start()
        await asyncio.sleep(0.3)
        blocked = time.monotonic()
        time.sleep(0.8)  # the loop is blocked, as by a synchronous call that hangs
        unblocked = time.monotonic()
        await asyncio.sleep(0.3)
        await sd.stop(1.0)
    finally:
        sock.close()
    times = pings(sock)
    assert len(pings(sock, until=blocked)) >= 3 and len(pings(sock, since=unblocked)) >= 2, times
    assert pings(sock, since=blocked + 0.05, until=unblocked) == [], times


async def test_watchdog_variables_meant_for_another_process_are_ignored(notify_socket) -> None:
    tasks: list[asyncio.Task[Any]] = []
    env = {"NOTIFY_SOCKET": notify_socket.env, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid() + 1)}
    sd = SystemdNotify(lambda: "fine", await _spawn_owned(tasks), env=env)
    await sd.start()
    await asyncio.sleep(0.4)
    sd.reloading()
    sd.ready()
    await sd.stop(1.0)
    await asyncio.sleep(0.05)
    kinds = [next(iter(m)) for _, m in notify_socket.messages]
    assert kinds == ["READY", "RELOADING", "READY", "STOPPING"]
    assert all(t.done() for t in tasks)


async def test_without_notify_socket_the_component_does_nothing() -> None:
    sd = SystemdNotify(lambda: "fine", lambda name, coro: pytest.fail("nothing to spawn"), env={"WATCHDOG_USEC": "1"})
    assert not sd.enabled and sd.watchdog_every is None
    await sd.start()
    sd.reloading()
    sd.ready()
    await sd.stop(1.0)


async def test_a_vanished_socket_is_logged_once_and_sending_goes_on(short_dir) -> None:
    from structlog.testing import capture_logs

    sock = NotifySocket(str(short_dir / "gone"))
    tasks: list[asyncio.Task[Any]] = []
    env = {"NOTIFY_SOCKET": sock.env, "WATCHDOG_USEC": "40000"}
    sd = SystemdNotify(lambda: "fine", await _spawn_owned(tasks), env=env)
    with capture_logs() as logs:
        await sd.start()
        sock.close()
        os.unlink(sock.env)
        await asyncio.sleep(0.2)  # ten pings into nothing
        assert not any(t.done() for t in tasks)
        await sd.stop(1.0)
    failed = [e for e in logs if e["event"] == "systemd.notify_failed"]
    assert len(failed) == 1 and "No such file" in failed[0]["error"]


# -- pure parts -------------------------------------------------------------------------------------
def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == b"\0abstract/name"
    assert socket_address(None) is None and socket_address("") is None
    assert socket_address("vsock:2:1234") is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
        ({"WATCHDOG_USEC": "2"}, 0.01),
    ],
)
def test_watchdog_period(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_period(env, 42) == expected


def test_status_line() -> None:
    assert status_line(12, 1, 1, 0, []) == "12 checks, 1 failing, 1 open incident, 0 events pending"
    assert status_line(1, 0, 2, 1, []) == "1 check, 0 failing, 2 open incidents, 1 event pending"
    line = status_line(1, 1, 0, 0, ["docker unreachable: Docker unreachable at\nhttp://x", "database slow"])
    assert line == (
        "1 check, 1 failing, 0 open incidents, 0 events pending; "
        "degraded: docker unreachable: Docker unreachable at http://x; database slow"
    )
    assert len(status_line(1, 1, 0, 0, ["x" * 5000])) == 400
