"""Docker's event stream: a checked container's death is seen at once, not at the next poll.

The engine tells every subscriber what happens to its containers. This component subscribes to
what matters for a check — ``die``, ``oom``, ``kill``, ``stop``, ``start``, ``restart`` and
``health_status`` (filtered by the engine itself, so the ``exec_*`` events every health probe
makes never reach the agent) — and, for each event about a container a check watches (its
``container``, else its heal's), asks the scheduler to run that check now. Whatever stopped the
container, the check sees it within milliseconds, whatever its interval; polling stays the
safety net. The last ``RECENT`` events of each watched container are kept in memory for the
evidence bundle (``container.docker_events``: ``[{at, action, exit_code, oom}]``).

The stream is read with aiohttp over the engine's socket (unix, or tcp/http): a long-lived GET
of ``/events`` in chunked JSON lines, on the event loop, no thread and no extra import. An engine
reached otherwise (``ssh://``, ``https://``) is read through docker-py in a thread of its own
(``DockerEngine.events``). When the stream breaks (the engine restarted, or is gone) it reconnects
with a backoff from 0.5 s doubling to 5 s; a stream resumed asks the engine for what happened
since the last event it saw, and every watched check runs once at once, since an engine that
restarted forgets its events.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:  # pragma: no cover
    from agent.dockerclient import DockerEngine

log = structlog.get_logger("lifeguard.docker_events")

ACTIONS = ("die", "oom", "kill", "stop", "start", "restart", "health_status")
"""The container events that re-run a check (``health_status`` matches ``health_status: unhealthy``)."""
RECENT = 20
"""Events kept per watched container, the most recent ones."""
RETRY_FIRST, RETRY_MAX = 0.5, 5.0
"""Seconds before reconnecting a broken stream: the first wait, doubling up to the last."""

Targets = Callable[[], Mapping[str, Sequence[str]]]
"""The watched containers (as checks name them) and the checks each one's events re-run."""
Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class StreamBroke(Exception):
    """The event stream could not be opened, or ended."""


def event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """One engine event as the evidence keeps it: ``{at, action, exit_code, oom}``."""
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    action = str(event.get("Action") or event.get("status") or "")
    nano = event.get("timeNano")
    at = nano / 1e9 if isinstance(nano, int) else float(event.get("time") or time.time())
    code = attributes.get("exitCode")
    try:
        exit_code = int(code) if code is not None else None
    except ValueError:
        exit_code = None
    from agent.timefmt import iso

    return {"at": iso(at), "action": action, "exit_code": exit_code, "oom": action == "oom"}


def watched_key(event: Mapping[str, Any], targets: Mapping[str, Sequence[str]]) -> str | None:
    """The watched container (as a check names it: name, id or id prefix) an event is about."""
    actor = event.get("Actor") or {}
    name = str((actor.get("Attributes") or {}).get("name") or "").lstrip("/")
    container_id = str(actor.get("ID") or event.get("id") or "")
    if name and name in targets:
        return name
    if container_id in targets:
        return container_id
    for key in targets:
        if len(key) >= 12 and container_id.startswith(key):
            return key
    return None


class DockerEvents:
    """A supervised component: reads the engine's events while the agent runs."""

    name = "docker-events"

    def __init__(
        self,
        docker: DockerEngine,
        targets: Targets,
        run_now: Callable[[str], object],
        spawn: Spawn,
        *,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.docker = docker
        self.targets = targets
        self.run_now = run_now
        self.spawn = spawn
        self.retry_first, self.retry_max = retry_first, retry_max
        self.connected = asyncio.Event()  # set while a stream is open (tests and the bench wait on it)
        self.streams_opened = 0
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        self._since_nano: int | None = None
        self._seen_at_since: set[tuple[str, str]] = set()  # (container id, action) seen at that nanosecond
        self._task: asyncio.Task[Any] | None = None

    def recent(self, container: str) -> list[dict[str, Any]]:
        """The last events of a watched container, oldest first (for its evidence)."""
        return list(self._recent.get(container, ()))

    async def start(self) -> None:
        self._task = self.spawn("docker:events", self.run())

    async def stop(self, grace: float) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """Read events until cancelled; reconnect with a backoff when the stream breaks."""
        wait = self.retry_first
        while True:
            try:
                async for event in self._stream():
                    if not self.connected.is_set():
                        self._opened()
                        wait = self.retry_first
                    if event is not None:
                        self.handle(event)
                reason = "the engine closed the stream"
            except StreamBroke as exc:
                reason = str(exc)
            was_open = self.connected.is_set()
            self.connected.clear()
            log.warning("docker.events_broken", reason=reason, retry_in_s=wait, was_open=was_open)
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.retry_max)

    def _opened(self) -> None:
        self.connected.set()
        self.streams_opened += 1
        log.info("docker.events_open", url=self.docker.url, resumed=self.streams_opened > 1)
        if self.streams_opened > 1:
            # Events of the gap may be lost (an engine that restarted forgets them): look now.
            for checks in self.targets().values():
                for check in checks:
                    self.run_now(check)

    def handle(self, event: Mapping[str, Any]) -> None:
        """One event: record it for its container and run that container's checks now."""
        nano = event.get("timeNano")
        if isinstance(nano, int):
            actor = event.get("Actor") or {}
            this = (str(actor.get("ID") or event.get("id") or ""), str(event.get("Action") or ""))
            if self._since_nano is not None and (
                nano < self._since_nano or (nano == self._since_nano and this in self._seen_at_since)
            ):
                return  # a replay of one already seen, after a reconnect with ``since``
            if nano != self._since_nano:
                self._since_nano, self._seen_at_since = nano, set()
            self._seen_at_since.add(this)  # events of one nanosecond (start and restart) are all kept
        targets = self.targets()
        for gone in [k for k in self._recent if k not in targets]:
            del self._recent[gone]  # the check that watched it is gone
        key = watched_key(event, targets)
        if key is None:
            return
        record = event_record(event)
        self._recent.setdefault(key, deque(maxlen=RECENT)).append(record)
        log.info("docker.event", container=key, action=record["action"], exit_code=record["exit_code"])
        for check in targets[key]:
            self.run_now(check)

    def _filters(self) -> dict[str, list[str]]:
        return {"type": ["container"], "event": list(ACTIONS)}

    def _since(self) -> str | None:
        if self._since_nano is None:
            return None
        seconds, nanos = divmod(self._since_nano, 1_000_000_000)
        return f"{seconds}.{nanos:09d}"

    async def _stream(self) -> AsyncIterator[dict[str, Any] | None]:
        """The events, decoded; first a None once the stream is open. Raises ``StreamBroke``."""
        url = self.docker.url
        scheme, _, rest = url.partition("://")
        if scheme == "unix" or scheme in ("tcp", "http"):
            async for item in self._stream_http(scheme, rest):
                yield item
            return
        from agent.dockerclient import DockerError

        try:
            yield None
            async for event in self.docker.events(self._filters()):
                yield event
        except DockerError as exc:
            raise StreamBroke(str(exc)) from None

    async def _stream_http(self, scheme: str, rest: str) -> AsyncIterator[dict[str, Any] | None]:
        import aiohttp

        if scheme == "unix":
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=rest)
            base = "http://docker"
        else:
            connector = aiohttp.TCPConnector()
            base = f"http://{rest.rstrip('/')}"
        params = {"filters": json.dumps(self._filters())}
        if (since := self._since()) is not None:
            params["since"] = since
        timeout = aiohttp.ClientTimeout(total=None, connect=self.docker.timeout, sock_read=None)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.get(f"{base}/events", params=params) as response:
                    if response.status != 200:
                        text = (await response.text())[:200]
                        raise StreamBroke(f"the engine answered HTTP {response.status}: {text.strip()}")
                    yield None
                    async for line in response.content:
                        if not line.strip():
                            continue
                        try:
                            event = json.loads(line)
                        except ValueError:
                            log.warning("docker.event_unreadable", line=line[:200].decode(errors="replace"))
                            continue
                        if isinstance(event, dict):
                            yield event
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise StreamBroke(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None


def watched_containers(tracked: Mapping[str, Any]) -> dict[str, list[str]]:
    """The containers the engine's tracked checks watch (``Tracked.evidence_container``: the
    check's container, else its heal's) and which checks, for ``DockerEvents.targets``."""
    found: dict[str, list[str]] = {}
    for name, t in tracked.items():
        container = t.evidence_container
        if container:
            found.setdefault(container, []).append(name)
    return found


__all__ = ["ACTIONS", "RECENT", "DockerEvents", "event_record", "watched_containers", "watched_key"]
