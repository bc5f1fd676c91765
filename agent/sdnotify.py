"""systemd's notify protocol, so a ``Type=notify`` unit knows when the agent is ready, what it is
doing, that its event loop is alive, and when it reloads or stops.

The protocol is one datagram per message, ``KEY=value`` lines, sent to the ``AF_UNIX`` socket
named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for Linux's abstract namespace); it needs no
library. Without ``$NOTIFY_SOCKET`` (not under systemd, or ``NotifyAccess=none``) the component
does nothing at all.

Added last to the supervisor, it starts after everything else did — the API listens and every
check is scheduled — and says ``READY=1`` then; it is the first to stop, and says ``STOPPING=1``.
``WATCHDOG=1`` is sent every ``$WATCHDOG_USEC / 2`` by a task on the event loop itself, not by a
thread: a loop wedged by a blocking call stops the pings, and systemd kills and restarts the
agent. ``STATUS=`` is a one-line summary, sent again when it changes (read about once a second).
Sending never blocks and never raises: a datagram the socket cannot take now is dropped, the
next ping or status goes out as usual.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

log = structlog.get_logger("lifeguard.sdnotify")

STATUS_EVERY = 1.0  # seconds between reads of the status line (sent only when it changed)
MIN_WATCHDOG_PING = 0.01  # a tiny WATCHDOG_USEC must not turn the ping loop into a busy loop

Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


def socket_address(value: str | None) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address: a path, or ``@name`` → ``\\0name`` (abstract)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    return None  # systemd sends only these two forms (vsock addresses are for VMs, not for us)


def watchdog_period(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the timeout), or None when no watchdog applies
    to this process: ``$WATCHDOG_USEC`` absent or not a positive number, or ``$WATCHDOG_PID``
    naming another process (the variables were inherited, not meant for us)."""
    owner = env.get("WATCHDOG_PID")
    if owner and owner.strip() != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return max(usec / 2_000_000, MIN_WATCHDOG_PING)


def status_line(checks: int, failing: int, open_incidents: int, pending: int, problems: list[str]) -> str:
    """``12 checks, 1 failing, 1 open incident, 0 events pending`` (and what degrades the agent)."""
    line = (
        f"{checks} check{'s' * (checks != 1)}, {failing} failing, "
        f"{open_incidents} open incident{'s' * (open_incidents != 1)}, "
        f"{pending} event{'s' * (pending != 1)} pending"
    )
    if problems:
        line += "; degraded: " + "; ".join(problems)
    return " ".join(line.split())[:400]  # one line, whatever a problem's text holds


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, the clock ``MONOTONIC_USEC=`` is read against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotify:
    """The notify protocol as a lifecycle component; a no-op without ``$NOTIFY_SOCKET``."""

    name = "systemd"

    def __init__(
        self, status: Callable[[], str], spawn: Spawn, *, env: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if env is None else env
        self._status = status
        self._spawn = spawn
        self.address = socket_address(env.get("NOTIFY_SOCKET"))
        self.watchdog_every = watchdog_period(env, os.getpid()) if self.address is not None else None
        self._sock: socket.socket | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._last_status: str | None = None
        self._send_failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    async def start(self) -> None:
        if self.address is None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        self._sock = sock
        self._last_status = self._read_status()
        self._send(f"READY=1\nSTATUS={self._last_status}")
        self._tasks.append(self._spawn("systemd:status", self._refresh_status()))
        if self.watchdog_every is not None:
            self._tasks.append(self._spawn("systemd:watchdog", self._ping(self.watchdog_every)))
        log.info(
            "systemd.notify",
            socket=_shown(self.address),
            watchdog_s=None if self.watchdog_every is None else round(self.watchdog_every * 2, 3),
        )

    async def stop(self, grace: float) -> None:
        if self._sock is None:
            return
        self._send("STOPPING=1\nSTATUS=stopping")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._sock.close()
        self._sock = None

    def reloading(self) -> None:
        """Say a reload has begun (``RELOADING=1`` with the monotonic time systemd requires)."""
        if self._sock is not None:
            self._send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec()}\nSTATUS=reloading the config")

    def ready(self) -> None:
        """Say the reload is over (applied or refused): the agent serves again."""
        if self._sock is not None:
            self._last_status = self._read_status()
            self._send(f"READY=1\nSTATUS={self._last_status}")

    # -- the two loops ---------------------------------------------------------------------------
    async def _ping(self, every: float) -> None:
        while True:
            self._send("WATCHDOG=1")
            await asyncio.sleep(every)

    async def _refresh_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            line = self._read_status()
            if line != self._last_status:
                self._last_status = line
                self._send(f"STATUS={line}")

    def _read_status(self) -> str:
        try:
            return self._status()
        except Exception as exc:  # a status that cannot be read must not stop the pings
            return f"status unavailable: {exc}"

    def _send(self, message: str) -> None:
        assert self._sock is not None and self.address is not None
        try:
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:  # full (BlockingIOError), or systemd's socket gone: drop this one
            if not self._send_failed:
                log.warning("systemd.notify_failed", socket=_shown(self.address), error=str(exc))
            self._send_failed = True
        else:
            if self._send_failed:
                log.info("systemd.notify_resumed", socket=_shown(self.address))
            self._send_failed = False


def _shown(address: str | bytes) -> str:
    return "@" + os.fsdecode(address[1:]) if isinstance(address, bytes) else address
