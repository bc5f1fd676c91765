"""Checks from container labels: opt-in with ``docker.discover.enabled``.

A container labelled ``lifeguard.check.type=http|tcp|container`` becomes a check named after its
Compose service (``com.docker.compose.service``), else its container name; the other labels
(``lifeguard.check.url`` / ``.port`` / ``.host`` / ``.path`` / ``.interval`` / ``.timeout``,
``lifeguard.severity``, ``lifeguard.heal=restart``) fill its keys, and the check is validated by
the same model as one written in the config, with the config's ``defaults`` and ``routes``. Bad
labels are a warning naming the container and the label, and the container is ignored. A check
in the config always wins over a label of the same name, and a label's heal is honoured only with
``allow_heal: true``: discovery never restarts what the config did not allow.

Which containers: ``project: auto`` those of the agent's own Compose project (its own container
found through ``/proc/self/cgroup``, ``/proc/self/mountinfo`` or its host name; not in a
container: nothing is discovered, and the log says why), a name that project, ``any`` every one.
Docker's events (start, die, destroy) trigger a scan at once; a scan every ``poll`` is the safety
net. A scan that finds a different set of labelled containers applies it through the daemon's
reload path (``Daemon.discovered_changed``), so a container that goes away takes its check along
and its open incident resolves with ``check_removed``. A hung engine stalls nothing: every call is
bounded, the event stream reads in a thread of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.config.model import Invalid
from agent.dockerclient import ContainerNotFound, DockerError

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import CheckConfigBase, Config, DiscoverConfig
    from agent.dockerclient import DockerEngine

log = structlog.get_logger("lifeguard.discovery")

LABEL_TYPE = "lifeguard.check.type"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
TYPES = ("http", "tcp", "container")
EVENTS = ("start", "die", "destroy")
EVENTS_RETRY = 5.0  # seconds before reopening an event stream that broke
# Which label each check key comes from, to name the label in a warning.
LABELS = {
    "type": LABEL_TYPE,
    "url": "lifeguard.check.url",
    "port": "lifeguard.check.port",
    "host": "lifeguard.check.host",
    "interval": "lifeguard.check.interval",
    "timeout": "lifeguard.check.timeout",
    "severity": "lifeguard.severity",
    "heal": "lifeguard.heal",
    "name": SERVICE_LABEL,
}

__all__ = ["Discovery", "Labelled", "checks_from_labels", "own_container_ids"]


@dataclass(frozen=True, slots=True)
class Labelled:
    """One labelled container as a scan saw it."""

    id: str
    name: str
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Labelled:
        names = row.get("Names") or [row["Id"][:12]]
        labels = row.get("Labels") or {}
        return cls(row["Id"], str(names[0]).lstrip("/"), tuple(sorted(labels.items())))


def _raw_check(container: Labelled, allow_heal: bool) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """The check a container's labels describe, as the config file would spell it, and the
    warnings (label, text) about it; None when the labels cannot make a check."""
    labels = dict(container.labels)
    warnings: list[tuple[str, str]] = []
    kind = labels.get(LABEL_TYPE, "").strip()
    if kind not in TYPES:
        return None, [(LABEL_TYPE, f"unknown check type {kind!r} (expected one of: {', '.join(TYPES)})")]
    service = labels.get(SERVICE_LABEL) or container.name
    raw: dict[str, Any] = {"name": service, "type": kind, "container": container.name}
    host = labels.get("lifeguard.check.host") or service
    port = labels.get("lifeguard.check.port")
    if kind == "http":
        url = labels.get("lifeguard.check.url")
        if url is None and port is not None:
            path = labels.get("lifeguard.check.path", "/")
            url = f"http://{host}:{port}{path if path.startswith('/') else '/' + path}"
        if url is None:
            return None, [("lifeguard.check.url", "required for an http check (or lifeguard.check.port)")]
        raw["url"] = url
    elif kind == "tcp":
        if port is None:
            return None, [("lifeguard.check.port", "required for a tcp check")]
        raw["host"], raw["port"] = host, port
    for key in ("interval", "timeout"):
        if (value := labels.get(f"lifeguard.check.{key}")) is not None:
            raw[key] = value
    if (severity := labels.get("lifeguard.severity")) is not None:
        raw["severity"] = severity
    heal = labels.get("lifeguard.heal")
    if heal is not None:
        if heal != "restart":
            return None, [("lifeguard.heal", f"unknown heal {heal!r} (expected: restart)")]
        if allow_heal:
            raw["heal"] = {"restart_container": container.name}
        else:
            warnings.append(("lifeguard.heal", "ignored: docker.discover.allow_heal is false"))
    return raw, warnings


def checks_from_labels(
    containers: list[Labelled], config: Config, *, allow_heal: bool
) -> tuple[list[CheckConfigBase], list[tuple[Labelled, str, str]]]:
    """The checks the labelled containers describe, validated against ``config`` (its defaults and
    routes), leaving out names the config has; and every warning as (container, label, text)."""
    from actions.healers import HEALERS
    from agent.routing import route
    from checks import CHECK_TYPES

    taken = {c.name for c in config.checks}
    context = {
        "base_dir": config.path.parent,
        "environ": os.environ,
        "heal_kinds": HEALERS,
        "defaults": config.defaults,
    }
    found: list[CheckConfigBase] = []
    warnings: list[tuple[Labelled, str, str]] = []
    for container in sorted(containers, key=lambda c: c.name):
        raw, said = _raw_check(container, allow_heal)
        warnings.extend((container, label, text) for label, text in said)
        if raw is None:
            continue
        if raw["name"] in taken:
            where = "the config" if raw["name"] in {c.name for c in config.checks} else "another container"
            warnings.append((container, SERVICE_LABEL, f"check {raw['name']!r} is already defined by {where}"))
            continue
        try:
            check = CHECK_TYPES[raw["type"]].config_model.model_validate(raw, context=context)
        except Invalid as exc:
            for loc, text in exc.errors:
                key = str(loc[0]) if loc else "type"
                warnings.append((container, LABELS.get(key, f"lifeguard.check.{key}"), text))
            continue
        if config.routes:
            routed = route(check, config.routes, check.notify)
            check = check if routed is None else check.model_copy(update={"notify": routed})
        taken.add(check.name)
        found.append(check)
    return found, warnings


def own_container_ids(proc: Path = Path("/proc/self")) -> list[str]:
    """Ids (or the host name, which Docker sets to the short id) this process's container may have."""
    ids: list[str] = []
    try:
        ids += re.findall(r"(?:docker[/-]|/containers/)([0-9a-f]{64})", (proc / "cgroup").read_text())
    except OSError:
        pass
    try:
        mounts = (proc / "mountinfo").read_text()
        ids += re.findall(r"/containers/([0-9a-f]{64})/hostname /etc/hostname ", mounts)
    except OSError:
        pass
    ids.append(socket.gethostname())
    return list(dict.fromkeys(ids))


class Discovery:
    """The ``discovery`` component: watches labelled containers, hands their checks to the daemon."""

    name = "discovery"

    def __init__(
        self,
        docker: DockerEngine,
        config: DiscoverConfig,
        *,
        spawn: Callable[[str, Coroutine[Any, Any, None]], asyncio.Task[Any]],
        on_change: Callable[[], Awaitable[object]],
    ) -> None:
        # Told how to own its tasks and whom to tell of a change, it knows nothing of the daemon.
        self._spawn = spawn
        self._on_change = on_change
        self.docker = docker
        self.config = config
        self.project: str | None = None  # the Compose project looked at; None: any
        self.containers: list[Labelled] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._warned: set[tuple[str, str, str]] = set()

    async def start(self) -> None:
        self._tasks = [self._spawn("discovery:scan", self._run())]

    async def stop(self, grace: float) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def checks_for(self, config: Config) -> list[CheckConfigBase]:
        """The discovered checks, validated against ``config``; each warning logged once."""
        found, warnings = checks_from_labels(self.containers, config, allow_heal=self.config.allow_heal)
        for container, label, text in warnings:
            key = (container.id, label, text)
            if key not in self._warned:
                self._warned.add(key)
                event = "discovery.heal_ignored" if text.startswith("ignored:") else "discovery.invalid_labels"
                log.warning(event, container=container.name, label=label, error=text)
        return found

    async def _run(self) -> None:
        project = await self._project()
        if project is False:
            return
        self.project = project if isinstance(project, str) else None
        log.info("discovery.started", project=self.project or "any", poll_s=self.config.poll,
                 allow_heal=self.config.allow_heal)
        self._tasks.append(self._spawn("discovery:events", self._events()))
        while True:
            self._wake.clear()
            await self._scan()
            try:
                async with asyncio.timeout(self.config.poll):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _project(self) -> str | bool:
        """The project to limit discovery to; True: any; False: none can be found (discover nothing)."""
        wanted = self.config.project
        if wanted == "any":
            return True
        if wanted != "auto":
            return wanted
        while True:
            try:
                for candidate in own_container_ids():
                    try:
                        attrs = await self.docker.inspect(candidate)
                    except ContainerNotFound:
                        continue
                    project = ((attrs.get("Config") or {}).get("Labels") or {}).get(PROJECT_LABEL)
                    if project:
                        return str(project)
                    log.warning("discovery.no_project", container=attrs.get("Name", candidate).lstrip("/"),
                                reason="the agent's container has no com.docker.compose.project label",
                                fix="set docker.discover.project to a project name, or any")
                    return False
                log.warning("discovery.no_project", reason="the agent does not run in a container of this engine",
                            fix="set docker.discover.project to a project name, or any")
                return False
            except DockerError as exc:  # the engine is not there yet: ask again later
                log.warning("discovery.error", stage="own container", error=str(exc))
                await asyncio.sleep(self.config.poll)

    async def _scan(self) -> None:
        filters: dict[str, Any] = {"label": [LABEL_TYPE]}
        if self.project is not None:
            filters["label"].append(f"{PROJECT_LABEL}={self.project}")
        try:
            rows = await self.docker.list_containers(filters)
        except DockerError as exc:  # keep what was found: a Docker outage removes no check
            log.warning("discovery.error", stage="scan", error=str(exc))
            return
        found = sorted((Labelled.of(row) for row in rows), key=lambda c: c.id)
        if found == self.containers:
            return
        self.containers = found
        log.info("discovery.changed", containers=[c.name for c in found])
        await self._on_change()

    async def _events(self) -> None:
        filters = {"type": ["container"], "event": list(EVENTS), "label": [LABEL_TYPE]}
        while True:
            try:
                async for event in self.docker.events(filters):
                    action = str(event.get("Action") or event.get("status") or "")
                    if action.startswith("exec_"):
                        continue
                    self._wake.set()
            except DockerError as exc:
                log.warning("discovery.error", stage="events", error=str(exc), retry_in_s=EVENTS_RETRY)
            await asyncio.sleep(EVENTS_RETRY)
            self._wake.set()  # events may have been missed meanwhile
