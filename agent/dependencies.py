"""Dependencies: one page for one cause.

A check may name the checks it ``depends_on``. While one of them has an open incident, a failing
dependant's incident opens held back — ``suppressed_by`` that incident: recorded, not notified,
not healed — and the cause's incident lists it under ``impact``, and says so with one
``incident.updated`` (``changes: ["impact"]``) for the dependants of about a second. When the cause
resolves, its dependants run at once; one that still fails is released exactly once, as if it had
just opened (one ``incident.opened``, and its heal). A dependant that recovers while held back
resolves without a word. The flag is stored (``suppressed_by``, cleared at the release), so a
restart in between still releases once.

Built in: the Docker engine. While it is unreachable, container checks do not each open an
incident: the agent opens one for the engine itself at the first unreachable call (check
``docker``, ``check_type: docker``) and the container checks' incidents open suppressed by it; it
resolves once the engine has kept answering for ``DOCKER_SETTLE`` seconds.

The shape follows maintenance windows (``agent.engine``: ``quiet``, ``_in_maintenance``,
``_release_if_over``): the engine asks ``cause()`` before it evaluates a result, records the
incident quietly when there is one, and calls ``release_if_free()`` under the check's lock. The
config side (unknown names, cycles) is ``agent.config.depends``, a pure function of the raw file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from agent.store import Change, new_id

if TYPE_CHECKING:  # pragma: no cover
    from agent.dockerclient import DockerEngine
    from agent.engine import Engine, Tracked

log = structlog.get_logger("lifeguard.dependencies")

DOCKER_CHECK = "docker"
"""The check name (and ``check_type``) of the Docker engine's own incident."""


IMPACT_COALESCE = 1.0
"""Seconds the cause's incident gathers dependants before it says so: fifty containers held back by
the Docker engine make one ``incident.updated``, not fifty."""

DOCKER_SETTLE = 2.0
"""Seconds the Docker engine must keep answering before its incident resolves: an engine that is
stopping answers some calls and refuses others, and must not page twice."""


# -- the engine's side -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cause:
    """The open incident that holds a check's incident back, and whose it is."""

    incident_id: str
    check: str


class Dependencies:
    """What the engine holds back because of another incident; the Docker engine's incident."""

    def __init__(self, engine: Engine, *, docker_severity: str = "high", docker_notify: Sequence[str] | None = None):
        self.engine = engine
        self.docker: DockerEngine | None = None  # set by the daemon when some check needs Docker
        self.docker_severity = docker_severity
        self._docker_notify = None if docker_notify is None else list(docker_notify)
        self.docker_incident: str | None = None
        self.held: dict[str, str] = {}  # incident id -> the incident that holds it back
        # Run a check now, off its schedule (the daemon's scheduler): a dependant is looked at
        # again as soon as its cause resolves, rather than at its next planned run.
        self.run_now: Callable[[str], object] = lambda _check: None
        self._docker_lock = asyncio.Lock()
        self._docker_flips = 0  # changes of reachability seen: a resolve waits for none to come
        self.impact_coalesce = IMPACT_COALESCE
        self._impact_pending: dict[str, list[tuple[str, str]]] = {}  # cause -> (check, incident) to note
        self.docker_settle = DOCKER_SETTLE

    @property
    def docker_notify(self) -> list[str]:
        return list(self.engine._notify_all if self._docker_notify is None else self._docker_notify)

    def set_docker_defaults(self, severity: str, notify: Sequence[str] | None) -> None:
        """The Docker incident's severity and notifiers (the config's ``defaults``), from a reload on."""
        self.docker_severity = severity
        self._docker_notify = None if notify is None else list(notify)

    def holds(self, incident_id: str | None) -> bool:
        return incident_id is not None and incident_id in self.held

    def restore(self, row: Mapping[str, Any]) -> bool:
        """Take back an unresolved incident's hold, or the Docker incident; True if the row was
        the Docker incident (which no check tracks)."""
        if row["check_type"] == DOCKER_CHECK and row["check_name"] == DOCKER_CHECK and self.docker is not None:
            self.docker_incident = row["id"]
            return True  # (no Docker any more: resolved as a removed check)
        if row.get("suppressed_by"):
            self.held[row["id"]] = row["suppressed_by"]
        return False

    def forget(self, incident_id: str) -> None:
        """The incident is resolved: it holds nothing back and is held by nothing."""
        self.held.pop(incident_id, None)
        if self.docker_incident == incident_id:
            self.docker_incident = None

    # -- what holds a check back --------------------------------------------------------
    async def cause(self, tracked: Tracked, ok: bool) -> Cause | None:
        """The open incident holding ``tracked``'s back now, if any. A failing container check
        while the engine is unreachable opens the engine's incident first (once)."""
        if self._needs_docker(tracked) and self.docker is not None:
            if self.docker.reachable is False and not ok:
                await self.docker_unreachable(self.docker.last_error or "Docker unreachable")
            if self.docker_incident is not None:
                return Cause(self.docker_incident, DOCKER_CHECK)
        for name in tracked.config.depends_on:
            dep = self.engine.tracked.get(name)
            incident_id = None if dep is None else dep.state.incident_id
            if incident_id is not None:
                # A cause that is itself held back names its own cause: the root, not the relay.
                return Cause(self.held.get(incident_id, incident_id), name)
        return None

    async def evidence(self, incident_id: str) -> dict[str, Any]:
        """What a bundle adds about the incidents this one held back: ``{"impact": [...]}``, if any."""
        store = self.engine.store
        impact = await store.run(store.incidents.impact, incident_id)
        return {"impact": impact} if impact else {}

    @staticmethod
    def _needs_docker(tracked: Tracked) -> bool:
        return "docker" in type(tracked.check).needs

    def opened(self, incident_id: str, cause: Cause, check: str) -> None:
        """A held-back incident was written: remember it and tell the cause's incident (the
        dependants of about a second together)."""
        self.held[incident_id] = cause.incident_id
        pending = self._impact_pending.setdefault(cause.incident_id, [])
        pending.append((check, incident_id))
        if len(pending) == 1:
            self.engine._spawn(self._note_impact(cause.incident_id))

    async def _note_impact(self, cause_id: str) -> None:
        """The cause's incident says what it holds back: a timeline entry per dependant, one event."""
        await asyncio.sleep(self.impact_coalesce)
        noted = self._impact_pending.pop(cause_id, [])
        engine = self.engine
        async with engine._held(cause_id) as (row, tracked):
            if row["status"] == "resolved" or not noted:
                return
            change = Change(
                cause_id, engine.clock(),
                timeline=[("impact", f"{check} failing too: its incident {incident_id} is held back")
                          for check, incident_id in noted],
                events=[("incident.updated", None)],
                event_fields={"incident.updated": {"changes": ["impact"]}},
                notifiers=tracked.config.notify if tracked is not None else self._notify_of(row),
            )
            engine._filter(change, row["severity"])
            if not await engine._write(change, check=row["check_name"] or cause_id):
                return
        engine.on_events()

    def _notify_of(self, row: Mapping[str, Any]) -> list[str]:
        return self.docker_notify if row["check_type"] == DOCKER_CHECK else list(self.engine._notify_all)

    # -- release -------------------------------------------------------------------------
    async def release_if_free(self, tracked: Tracked, cause: Cause | None, failing: bool, now: float) -> None:
        """Under the check's lock: its held-back incident is released, once, when nothing holds it
        any more and the check still fails — notified as if it had just opened (unless
        maintenance still holds it: then the end of the maintenance notifies it). One that passes
        meanwhile waits: it resolves without a word, or its next failure releases it."""
        engine = self.engine
        incident_id = tracked.state.incident_id
        if cause is not None or not failing or incident_id is None or incident_id not in self.held:
            return
        was = self.held[incident_id]
        in_maintenance = incident_id in engine._in_maintenance
        change = Change(
            incident_id, now, notifiers=tracked.config.notify,
            update={"suppressed_by": None},
            timeline=[("released", f"{was} is over with this incident still open: "
                       + ("held by maintenance now" if in_maintenance else "notified now"))],
            events=[] if in_maintenance else [("incident.opened", None)],
        )
        engine._filter(change, tracked.config.severity)
        if not await engine._write(change, check=tracked.config.name):
            return  # the next result or tick tries again
        del self.held[incident_id]
        log.info("incident.released", check=tracked.config.name, incident_id=incident_id, cause=was)
        if change.events:
            engine.on_events()

    def after_resolve(self, incident_id: str) -> None:
        """An incident resolved: the checks it held back run again now, and a fresh failing result
        releases each (an older one may predate the recovery: Docker unreachable, say)."""
        self.forget(incident_id)
        for tracked in list(self.engine.tracked.values()):
            if self.held.get(tracked.state.incident_id or "") == incident_id:
                self.run_now(tracked.config.name)

    # -- the Docker engine's own incident -------------------------------------------------
    def docker_changed(self, reachable: bool, reason: str | None) -> None:
        """``DockerEngine``'s listener (on the loop): the engine became reachable or not."""
        self._docker_flips += 1
        if reachable:
            if self.docker_incident is not None:
                self.engine._spawn(self._resolve_when_settled(self._docker_flips))
        else:
            self.engine._spawn(self.docker_unreachable(reason or "Docker unreachable"))

    async def _resolve_when_settled(self, flips: int) -> None:
        await asyncio.sleep(self.docker_settle)
        if self._docker_flips == flips:  # it kept answering all along
            await self.docker_answers()

    async def docker_unreachable(self, reason: str) -> None:
        """Open the engine's incident, unless one is open."""
        engine = self.engine
        async with self._docker_lock:
            if self.docker_incident is not None:
                return
            now = engine.clock()
            incident_id = new_id("inc", now)
            target = self.docker.url if self.docker is not None else ""
            change = Change(
                incident_id, now, notifiers=self.docker_notify,
                create={
                    "check_name": DOCKER_CHECK, "check_type": DOCKER_CHECK, "target": target,
                    "container": None, "status": "open", "severity": self.docker_severity,
                    "title": f"{DOCKER_CHECK} failing: {reason}", "opened_at": now,
                    "max_restarts": None, "tags": json.dumps([]),
                },
                state={},
                timeline=[("opened", reason)],
                events=[("incident.opened", None)],
            )
            engine._filter(change, self.docker_severity)
            if not await engine._write(change, check=DOCKER_CHECK):
                return
            self.docker_incident = incident_id
        engine.tally.incident_opened(self.docker_severity)
        log.info("incident.opened", check=DOCKER_CHECK, incident_id=incident_id, message=reason)
        engine.on_events()

    async def docker_answers(self) -> None:
        """Resolve the engine's incident; what it held back is released."""
        engine = self.engine
        async with self._docker_lock:
            incident_id = self.docker_incident
            if incident_id is None or (self.docker is not None and self.docker.reachable is not True):
                return
            now = engine.clock()
            change = Change(
                incident_id, now, notifiers=self.docker_notify,
                update={"status": "resolved", "resolved_at": now, "resolve_reason": "recovered"},
                timeline=[("resolved", "recovered: Docker answers again")],
                events=[("incident.resolved", None)],
            )
            engine._filter(change, self.docker_severity)
            if not await engine._write(change, check=DOCKER_CHECK):
                return
            self.docker_incident = None
        log.info("incident.resolved", check=DOCKER_CHECK, incident_id=incident_id)
        engine.on_events()
        self.after_resolve(incident_id)


__all__ = ["DOCKER_CHECK", "Cause", "Dependencies"]
