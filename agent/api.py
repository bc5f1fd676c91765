"""The agent's HTTP API (aiohttp): health, checks, incidents and their evidence. Read-only.

It never decides anything and knows nothing of the daemon: it is given three small read
interfaces (``HealthFacts``, ``CheckBoard``, ``IncidentReader``) and formats what they say.
With a token, every route but ``/health`` needs ``Authorization: Bearer …``.
Errors are ``{"error": {"code": …, "message": …}}``.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from agent import __version__
from agent.engine import CheckView
from agent.payload import iso

INCIDENT_ID = re.compile(r"^inc_[0-9a-f]{12,}$")
PENDING_TOO_LONG = 60.0  # seconds an event may wait before /health says degraded


class HealthFacts(Protocol):
    """What ``/health`` reports about the running agent itself."""

    def uptime(self) -> float:
        """Seconds since the agent started."""
        ...

    def checks_running(self) -> int:
        """Checks in flight right now."""
        ...

    def problems(self) -> list[str]:
        """What keeps the agent from doing its job right now (Docker unreachable, writes failing)."""
        ...


class CheckBoard(Protocol):
    """Every configured check's latest state."""

    def check_views(self) -> Sequence[CheckView]: ...


class IncidentReader(Protocol):
    """Read access to incidents, their evidence and the outbox's figures."""

    async def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]: ...

    async def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    async def evidence(self, incident_id: str) -> dict[str, Any]: ...

    async def outbox_stats(self, now: float) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class _Sources:
    agent_name: str
    token: str | None
    health: HealthFacts
    board: CheckBoard
    incidents: IncidentReader
    clock: Callable[[], float]


SOURCES = web.AppKey("lifeguard.api", _Sources)


def create_app(
    *,
    agent_name: str,
    token: str | None,
    health: HealthFacts,
    board: CheckBoard,
    incidents: IncidentReader,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    app = web.Application(middlewares=[_errors_and_auth])
    app[SOURCES] = _Sources(agent_name, token or None, health, board, incidents, clock)
    app.router.add_get("/health", health_route)
    app.router.add_get("/api/checks", checks_route)
    app.router.add_get("/api/incidents", incidents_route)
    app.router.add_get("/api/incidents/{id}", incident_route)
    app.router.add_get("/api/incidents/{id}/evidence", evidence_route)
    return app


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def checks_status(views: Iterable[CheckView]) -> list[dict[str, Any]]:
    """The ``/api/checks`` list: each check's state and last result."""
    return [
        {
            "name": v.name,
            "type": v.type,
            "target": v.target,
            "state": "unknown" if v.last is None else ("passing" if v.last.ok else "failing"),
            "incident_id": v.incident_id,
            "last_result": None if v.last is None else dict(v.last.summary(), at=iso(v.last.started_at)),
        }
        for v in views
    ]


@web.middleware
async def _errors_and_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = request.app[SOURCES].token
    if token and request.path != "/health":
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return error(401, "unauthorized", "missing or wrong bearer token")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


async def health_route(request: web.Request) -> web.Response:
    src = request.app[SOURCES]
    stats = await src.incidents.outbox_stats(src.clock())
    problems = list(src.health.problems())
    age = stats["oldest_pending_age"]
    if age is not None and age > PENDING_TOO_LONG:
        problems.append(f"events pending for {age:.0f}s")
    return web.json_response(
        {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "version": __version__,
            "agent": src.agent_name,
            "uptime_s": round(src.health.uptime(), 1),
            "checks": len(src.board.check_views()),
            "checks_running": src.health.checks_running(),
            "outbox_pending": stats["pending"],
            "outbox_dead": stats["dead"],
        }
    )


async def checks_route(request: web.Request) -> web.Response:
    return web.json_response({"checks": checks_status(request.app[SOURCES].board.check_views())})


async def incidents_route(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status not in (None, "open", "resolved"):
        return error(400, "bad_parameter", f"status: expected open or resolved, got {status!r}")
    raw_limit = request.query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        return error(400, "bad_parameter", f"limit: expected an integer 1..1000, got {raw_limit!r}")
    rows = await request.app[SOURCES].incidents.list_incidents(status, int(raw_limit))
    return web.json_response({"incidents": rows})


async def _known_incident(request: web.Request) -> tuple[str, dict[str, Any] | web.Response]:
    incident_id = request.match_info["id"]
    if not INCIDENT_ID.match(incident_id):
        return incident_id, error(400, "bad_id", f"not an incident id: {incident_id!r}")
    found = await request.app[SOURCES].incidents.incident(incident_id)
    if found is None:
        return incident_id, error(404, "not_found", f"no incident {incident_id}")
    return incident_id, found


async def incident_route(request: web.Request) -> web.Response:
    _, found = await _known_incident(request)
    if isinstance(found, web.Response):
        return found
    return web.json_response(found)


async def evidence_route(request: web.Request) -> web.Response:
    incident_id, found = await _known_incident(request)
    if isinstance(found, web.Response):
        return found
    return web.json_response(await request.app[SOURCES].incidents.evidence(incident_id))
