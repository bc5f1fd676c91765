"""The evidence bundle: what was true when an incident opened, and again when it resolved.

Whoever gets paged first asks the same questions: what did the check see, what did the service
answer, what state is the container in and what did it just log, is the host itself in trouble.
The bundle answers them in one JSON document, gathered at the moment it matters, before a heal
restarts the container and the logs roll over.

Two rules shape this module. Evidence must never hold an incident back: each section is
gathered concurrently and bounded by ``time_bound``, and a section that fails or is slow becomes
``{"error": ...}`` while the others still arrive. And secrets must never leave: the container's
environment is never copied, and the values of its secret-named variables (plus the agent's own
configured secrets) are masked in logs, health output, the HTTP response and check messages.
The section builders are pure functions of raw data, so they are tested without Docker.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agent.durations import format_duration
from agent.redact import (
    redact_body,
    redact_headers,
    redact_text,
    redact_url,
    secret_env_values,
)
from agent.timefmt import iso, iso_datetime

if TYPE_CHECKING:  # pragma: no cover
    from agent.dockerclient import DockerEngine
    from checks.base import CheckResult

T = TypeVar("T")

HISTORY_LIMIT = 20
"""Check results kept per check, the most recent ones: what the engine remembers and a bundle shows."""

TOP_PROCESSES = 5

LOG_LINE_LIMIT = 2000
"""Characters kept of one log line; one runaway line must not make the bundle megabytes."""

# The first host snapshot has no earlier CPU reading to compare with; it waits this long once
# (in its worker thread) so the first incident's figures are real rather than zeros.
_CPU_WARMUP = 0.05
# Snapshots closer together than this (incidents opening together) share one CPU reading.
_CPU_MIN_WINDOW = 0.5

MAX_COLLECTIONS = 4
"""Bundles gathered at once; in a mass outage the rest queue rather than each scanning processes."""

HOST_SHARED_FOR = 1.0
"""Seconds one host snapshot serves every bundle that asks for one: incidents that open together
(a burst of ten in a second) describe the same machine, and a snapshot lists every process. Each
waited for the one before it, and the last of ten was delivered ~130 ms after it opened."""

_HOST_WORKERS = 2
# Host snapshots get their own threads: a slow /proc or a hung mount must not occupy the default
# executor, which DNS lookups of every HTTP check share.


class EvidenceCollector:
    """Gathers evidence bundles for incidents; one per agent, shared by all incidents."""

    def __init__(
        self,
        docker: DockerEngine | None,
        state_dir: Path,
        time_bound: float = 3.0,
        log_lines: int = 200,
        clock: Callable[[], float] = time.time,
        max_concurrent: int = MAX_COLLECTIONS,
    ) -> None:
        self.docker = docker
        self.state_dir = Path(state_dir)
        self.time_bound = time_bound
        self.log_lines = log_lines
        self.clock = clock
        self._host = HostSampler()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._collecting = 0
        self._queued = 0
        self._executor: ThreadPoolExecutor | None = None  # made at the first snapshot
        self._host_shared: tuple[float, asyncio.Future[dict[str, Any]]] | None = None  # (taken at, snapshot)
        # The engine's recent events about a container (``DockerEvents.recent``), when they are read.
        self.docker_events: Callable[[str], list[dict[str, Any]]] | None = None

    @property
    def collecting(self) -> int:
        """Bundles being gathered now; at most ``max_concurrent``."""
        return self._collecting

    @property
    def queued(self) -> int:
        """Bundles waiting for a free slot (a mass outage)."""
        return self._queued

    def close(self) -> None:
        """Let go of the snapshot threads; one stuck on a hung mount is not waited for."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._host_shared = None

    async def collect(
        self,
        *,
        phase: str,
        history: Sequence[CheckResult],
        failing: CheckResult | None,
        container: str | None,
        extra_secrets: Iterable[str] = (),
    ) -> dict[str, Any]:
        """A bundle for ``phase`` ("opened" or "resolved"); returns within about ``time_bound``
        once one of the ``max_concurrent`` slots is free."""
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:  # a collection cancelled while queued is no longer queued either
            self._queued -= 1
        self._collecting += 1
        try:
            return await self._collect(phase, history, failing, container, extra_secrets)
        finally:
            self._collecting -= 1
            self._slots.release()

    async def _collect(
        self,
        phase: str,
        history: Sequence[CheckResult],
        failing: CheckResult | None,
        container: str | None,
        extra_secrets: Iterable[str],
    ) -> dict[str, Any]:
        collected_at = self.clock()
        extra = [s for s in extra_secrets if s]
        (container_data, env_secrets), host = await asyncio.gather(
            self._container(container, extra), self._host_section()
        )
        # The response and check messages are masked with the container's secrets too, so they
        # are built once the container section has them.
        secrets = [*env_secrets, *extra]
        bundle = {
            "phase": phase,
            "collected_at": iso(collected_at),
            "checks": checks_section(history, secrets),
            "response": response_section(failing, secrets),
            "container": container_data,
            "host": host,
        }
        if failing is not None and failing.details:
            # What the probe saw besides a response (a command's perfdata, process figures), bounded.
            from checks.base import shown_details

            shown = shown_details(failing.details, lambda text: redact_text(text, secrets))
            if shown:
                bundle["details"] = shown
        return bundle

    async def _container(
        self, name: str | None, extra: list[str]
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """The container section (with the engine's recent events about it, when they are read)
        and the secret values found in its environment."""
        section, secrets = await self._container_state(name, extra)
        if section is not None and name and self.docker_events is not None:
            section["docker_events"] = self.docker_events(name)
        return section, secrets

    async def _container_state(
        self, name: str | None, extra: list[str]
    ) -> tuple[dict[str, Any] | None, list[str]]:
        if not name:
            return None, []
        if self.docker is None:
            return {"name": name, "error": "Docker is not configured"}, []
        # inspect and logs run side by side, each under the same bound, so the section as a
        # whole takes at most time_bound; logs without inspect are useless, not vice versa.
        attrs, logs = await asyncio.gather(
            self._bounded(self.docker.inspect(name)),
            self._bounded(self.docker.logs(name, tail=self.log_lines)),
        )
        if isinstance(attrs, _Failure):
            return {"name": name, "error": redact_text(attrs.reason, extra)}, []
        env = (attrs.get("Config") or {}).get("Env")
        env_secrets = secret_env_values(env)
        secrets = [*env_secrets, *extra]
        if isinstance(logs, _Failure):
            section = container_section(attrs, [], secrets)
            section["logs_error"] = redact_text(logs.reason, secrets)
        else:
            section = container_section(attrs, logs[-self.log_lines :], secrets)
        return section, env_secrets

    async def _host_section(self) -> dict[str, Any]:
        """The host's figures: a snapshot under way or taken within ``HOST_SHARED_FOR`` is shared."""
        now = time.monotonic()
        shared = self._host_shared
        if shared is None or now - shared[0] > HOST_SHARED_FOR or (shared[1].done() and "error" in shared[1].result()):
            shared = (now, asyncio.ensure_future(self._host_snapshot()))
            self._host_shared = shared
        return dict(await asyncio.shield(shared[1]))

    async def _host_snapshot(self) -> dict[str, Any]:
        paths = [Path("/"), self.state_dir]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(_HOST_WORKERS, thread_name_prefix="lifeguard-evidence")
        loop = asyncio.get_running_loop()
        snapshot = await self._bounded(loop.run_in_executor(self._executor, host_snapshot, paths, self._host))
        return {"error": snapshot.reason} if isinstance(snapshot, _Failure) else snapshot

    async def _bounded(self, aw: Awaitable[T]) -> T | _Failure:
        """``aw``'s result within ``time_bound``, or why there is none; never raises an error."""
        try:
            return await asyncio.wait_for(aw, self.time_bound)
        except TimeoutError:
            return _Failure(f"timed out after {format_duration(self.time_bound)}")
        except Exception as exc:  # evidence is best effort: a failure is reported, not raised
            return _Failure(_describe(exc))


class _Failure:
    """Why a bounded call produced nothing."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def checks_section(
    history: Sequence[CheckResult], secret_values: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The last 20 results, oldest first, in their short form."""
    secrets = tuple(secret_values)
    recent = sorted(history, key=lambda r: r.started_at)[-HISTORY_LIMIT:]
    out = []
    for result in recent:
        summary = result.summary()
        summary["at"] = iso(summary["at"])
        # Messages quote URLs and error text, which can carry user-info or tokens.
        summary["message"] = redact_text(summary["message"], secrets)
        out.append(summary)
    return out


def response_section(
    result: CheckResult | None, secret_values: Iterable[str] = ()
) -> dict[str, Any] | None:
    """What the HTTP target answered, redacted; None for checks that saw no HTTP response."""
    if result is None:
        return None
    response = result.details.get("response")
    if not isinstance(response, dict):
        return None
    secrets = tuple(secret_values)
    raw_headers = response.get("headers") or {}
    content_type = next(
        (v for k, v in raw_headers.items() if k.lower() == "content-type"), None
    )
    body = response.get("body")
    return {
        "url": redact_url(response["url"]) if response.get("url") else response.get("url"),
        "status": response.get("status"),
        "headers": redact_headers(raw_headers, secrets),
        "body": redact_body(body, content_type, secrets) if isinstance(body, str) else None,
        "body_truncated": bool(response.get("body_truncated", False)),
    }


def container_section(
    attrs: dict[str, Any], logs: list[str], secret_values: Iterable[str] = ()
) -> dict[str, Any]:
    """The container part of a bundle from raw ``docker inspect`` attributes and log lines.

    Copies only what helps diagnose: identity, state, health; never ``Config.Env``, ``Cmd``,
    labels or mounts. Secret values are masked in log lines and health-probe output.
    """
    secrets = tuple(secret_values)
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    health = state.get("Health")
    return {
        "name": (attrs.get("Name") or "").lstrip("/"),
        "id": (attrs.get("Id") or "")[:12],
        # Config.Image is the name it was started from (nginx:1.25); Image is only a digest.
        "image": config.get("Image") or attrs.get("Image"),
        "state": {
            "status": state.get("Status"),
            "running": bool(state.get("Running", False)),
            "exit_code": state.get("ExitCode"),
            "oom_killed": bool(state.get("OOMKilled", False)),
            "restart_count": attrs.get("RestartCount", 0),
            "started_at": docker_time(state.get("StartedAt")),
            "finished_at": docker_time(state.get("FinishedAt")),
            "health": _health(health, secrets) if isinstance(health, dict) else None,
        },
        "logs": [_log_line(line, secrets) for line in logs],
    }


def _health(health: dict[str, Any], secrets: tuple[str, ...]) -> dict[str, Any]:
    return {
        "status": health.get("Status"),
        "failing_streak": health.get("FailingStreak", 0),
        "log": [
            {
                "start": docker_time(probe.get("Start")),
                "end": docker_time(probe.get("End")),
                "exit_code": probe.get("ExitCode"),
                "output": redact_text((probe.get("Output") or "").rstrip("\n"), secrets),
            }
            for probe in health.get("Log") or ()
        ],
    }


def _log_line(line: str, secrets: tuple[str, ...]) -> str:
    # Masked before it is cut, so a cut never splits a secret into an unrecognisable prefix.
    line = redact_text(line.rstrip("\r\n"), secrets)
    if len(line) > LOG_LINE_LIMIT:
        line = line[:LOG_LINE_LIMIT] + "…[truncated]"
    return line


_DOCKER_TIME = re.compile(
    r"^(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:?\d\d)$"
)


def docker_time(value: str | None) -> str | None:
    """A Docker timestamp (nanoseconds, any offset) as ISO-8601 UTC with milliseconds.

    Docker writes ``0001-01-01T00:00:00Z`` for "never" (a container that has not finished);
    that becomes None. Anything unparsable is passed through rather than lost.
    """
    if not value:
        return None
    match = _DOCKER_TIME.match(value)
    if match is None:
        return value
    if match.group("base").startswith("0001-"):
        return None
    frac = (match.group("frac") or "0")[:6].ljust(6, "0")
    tz = "+00:00" if match.group("tz") == "Z" else match.group("tz")
    parsed = datetime.fromisoformat(f"{match.group('base')}.{frac}{tz}")
    return iso_datetime(parsed)


class HostSampler:
    """CPU readings between host snapshots.

    psutil's own ``cpu_percent(interval=None)`` keeps its baseline per thread, and snapshots run
    on whichever worker thread is free, so the baseline is kept here instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Any = None  # psutil's cpu_times at the previous reading
        self._last_at = 0.0
        self._value = 0.0

    def cpu_percent(self) -> float:
        import psutil

        with self._lock:
            if self._last is None:
                # First reading: prime every process's own counter as well, then wait briefly.
                self._last = psutil.cpu_times()
                for proc in psutil.process_iter():
                    try:
                        proc.cpu_percent(None)
                    except psutil.Error:
                        pass
                time.sleep(_CPU_WARMUP)
            elif time.monotonic() - self._last_at < _CPU_MIN_WINDOW:
                # /proc/stat counts in 10 ms ticks: a window of a few ms reads as 0 or 100.
                return self._value
            before, now = self._last, psutil.cpu_times()
            self._last, self._last_at = now, time.monotonic()
            busy = _busy(now) - _busy(before)
            total = sum(now) - sum(before)
            if total > 0:
                self._value = round(min(100.0, max(0.0, 100.0 * busy / total)), 1)
            return self._value


def _busy(times: Any) -> float:
    idle = getattr(times, "idle", 0.0) + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


def host_snapshot(paths: Sequence[Path], sampler: HostSampler | None = None) -> dict[str, Any]:
    """The host's figures right now. Blocking (psutil reads /proc): run it in a thread.

    ``sampler`` carries the CPU baseline from the previous snapshot; without one the first
    reading waits ~50 ms to have something to compare with.
    """
    import psutil

    cpu = (sampler or HostSampler()).cpu_percent()
    memory = psutil.virtual_memory()
    disks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in paths:
        key = str(path)
        if key in seen:
            continue
        seen.add(key)
        try:
            usage = psutil.disk_usage(key)
        except OSError as exc:
            disks.append({"path": key, "error": exc.strerror or str(exc)})
            continue
        disks.append(
            {
                "path": key,
                "total": usage.total,
                "used": usage.used,
                "free": usage.free,
                "percent": usage.percent,
            }
        )
    return {
        "hostname": socket.gethostname(),
        "cpu_percent": cpu,
        "load_avg": [round(x, 2) for x in psutil.getloadavg()],
        "memory": {
            "total": memory.total,
            "available": memory.available,
            "used": memory.used,
            "percent": memory.percent,
        },
        "disk": disks,
        "top_processes": _top_processes(psutil),
    }


def _top_processes(psutil: Any) -> list[dict[str, Any]]:
    rows = []
    # process_iter caches Process objects, so cpu_percent compares with the previous snapshot.
    for proc in psutil.process_iter(["pid", "name", "cpu_percent", "memory_info"], ad_value=None):
        info = proc.info
        memory_info = info.get("memory_info")
        rows.append(
            {
                "pid": info["pid"],
                "name": info.get("name") or "",
                "cpu_percent": round(info.get("cpu_percent") or 0.0, 1),
                "rss": memory_info.rss if memory_info is not None else 0,
            }
        )
    rows.sort(key=lambda r: (r["cpu_percent"], r["rss"]), reverse=True)
    return rows[:TOP_PROCESSES]


def _describe(exc: BaseException) -> str:
    # The DockerError family already reads as a sentence; others get their type as context.
    from_docker = type(exc).__module__ == "agent.dockerclient"
    text = str(exc)
    if from_docker and text:
        return text
    return f"{type(exc).__name__}: {text}".rstrip(": ")

