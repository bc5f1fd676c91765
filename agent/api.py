"""The agent's HTTP API (aiohttp): health, checks, incidents and their evidence. Read-only.

It reads ``agent.store`` and the engine's in-memory check state; it never decides anything.
With ``agent.api.token`` set, every route but ``/health`` needs ``Authorization: Bearer …``.
Errors are ``{"error": {"code": …, "message": …}}``.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent import __version__

if TYPE_CHECKING:  # pragma: no cover
    from agent.daemon import Daemon

DAEMON = web.AppKey("daemon", "Daemon")
INCIDENT_ID = re.compile(r"^inc_[0-9a-f]{12,}$")
PENDING_TOO_LONG = 60.0  # seconds an event may wait before /health says degraded


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app[DAEMON].config.agent.api.token
    if token and request.path != "/health":
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return error(401, "unauthorized", "missing or wrong bearer token")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


def create_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[_errors_and_auth])
    app[DAEMON] = daemon
    app.router.add_get("/health", health)
    app.router.add_get("/api/checks", checks)
    app.router.add_get("/api/incidents", incidents)
    app.router.add_get("/api/incidents/{id}", incident)
    app.router.add_get("/api/incidents/{id}/evidence", evidence)
    return app


async def health(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    stats = await daemon.store.run(daemon.store.outbox.stats, time.time())
    problems = []
    if daemon.docker is not None and daemon.docker.reachable is False:
        problems.append(f"docker unreachable: {daemon.docker.last_error}")
    age = stats["oldest_pending_age"]
    if age is not None and age > PENDING_TOO_LONG:
        problems.append(f"events pending for {age:.0f}s")
    return web.json_response(
        {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "version": __version__,
            "agent": daemon.config.agent.name,
            "uptime_s": round(time.monotonic() - daemon.started, 1),
            "checks": len(daemon.engine.tracked),
            "checks_running": daemon.scheduler.running,
            "outbox_pending": stats["pending"],
            "outbox_dead": stats["dead"],
        }
    )


async def checks(request: web.Request) -> web.Response:
    return web.json_response({"checks": request.app[DAEMON].engine.checks_status()})


async def incidents(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    status = request.query.get("status")
    if status not in (None, "open", "resolved"):
        return error(400, "bad_parameter", f"status: expected open or resolved, got {status!r}")
    raw_limit = request.query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        return error(400, "bad_parameter", f"limit: expected an integer 1..1000, got {raw_limit!r}")
    rows = await daemon.store.run(daemon.store.incidents.list, status, int(raw_limit))
    return web.json_response({"incidents": rows})


async def _known_incident(request: web.Request) -> tuple[str, dict[str, Any] | web.Response]:
    daemon = request.app[DAEMON]
    incident_id = request.match_info["id"]
    if not INCIDENT_ID.match(incident_id):
        return incident_id, error(400, "bad_id", f"not an incident id: {incident_id!r}")
    found = await daemon.store.run(daemon.store.incidents.get, incident_id)
    if found is None:
        return incident_id, error(404, "not_found", f"no incident {incident_id}")
    return incident_id, found


async def incident(request: web.Request) -> web.Response:
    _, found = await _known_incident(request)
    if isinstance(found, web.Response):
        return found
    return web.json_response(found)


async def evidence(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    incident_id, found = await _known_incident(request)
    if isinstance(found, web.Response):
        return found
    return web.json_response(await daemon.store.run(daemon.store.evidence.get, incident_id))
