"""The agent's HTTP API (aiohttp): health, checks, incidents and their evidence, and the deliveries.

It never decides anything and knows nothing of the daemon: it is given small interfaces
(``HealthFacts``, ``CheckBoard``, ``IncidentReader``, ``DeliveryDesk``) and formats what they say.
Its writes put a dead delivery back in the queue, reload the config (``ReloadDesk``) and run
incidents (``IncidentDesk``: acknowledge, comment, status updates, open, change, resolve). Write
bodies are JSON objects checked field by field here; a refusal names its field
(``{"error": {"code": "bad_parameter", "message": …, "field": …}}``).
``/health`` answers from memory only (``HealthFacts`` is synchronous), so a database held by
another process never slows it down. With a token, every route but ``/health`` and the public
status page (``/status``, ``/status.json``, from a ``StatusSource``) needs ``Authorization: Bearer …``.
Every error, aiohttp's own included (a malformed request line, an oversized header, an unknown
method), is ``{"error": {"code": …, "message": …}}``: serve the app
with ``ApiRunner``, whose connections answer their parser errors in that shape.
The routes are described by an OpenAPI document shipped beside the code (``/api/openapi.json``).
``/metrics`` is the Prometheus text format, written by whatever ``metrics`` the app is given
(``agent.metrics.Exposition.write`` in the daemon) into the response a slice at a time.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from agent import __version__
from agent.durations import parse_duration
from agent.engine import PHASES, CheckView, IncidentConflict, IncidentPatch, UnknownIncident, UnknownSilence
from agent.incidents import SEVERITIES
from agent.maintenance import Match
from agent.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agent.metrics import Write as MetricsOut
from agent.payload import iso

log = structlog.get_logger("lifeguard.api")

INCIDENT_ID = re.compile(r"^inc_[0-9a-f]{12,}$")
SILENCE_ID = re.compile(r"^sil_[0-9a-f]{12,}$")
REPORT_SINCE = re.compile(r"[1-9][0-9]{0,3}[smhd]")  # at most 9999d
SILENCE_DURATION = re.compile(r"[1-9][0-9]{0,3}[smh]|[1-9][0-9]{0,2}d")  # at most 999d
DELIVERY_ID = re.compile(r"[0-9]{1,18}")  # fits SQLite's integer
DELIVERY_STATUSES = ("pending", "dead", "delivered")
INCIDENT_STATUSES = ("open", "acknowledged", "resolved")  # open: every unresolved one
NAME_MAX = 200  # an author, an assignee, a tag, a service, a title
TEXT_MAX = 10_000  # a comment, a message, a description, a root cause
LIST_MAX = 50
LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: str.isdigit() also takes '²' and '①'
PENDING_TOO_LONG = 60.0  # seconds an event may wait before /health says degraded
SHOWN = 40  # characters of a rejected value echoed in an error message
PUBLIC_PATHS = frozenset({"/health", "/status", "/status.json"})  # answered without the token
OPENAPI = Path(__file__).parent / "schemas" / "openapi.json"
MetricsWriter = Callable[[MetricsOut], Awaitable[None]]
"""Writes the whole ``/metrics`` text to the function it is given, a slice per call."""


class HealthFacts(Protocol):
    """What ``/health`` reports about the running agent itself."""

    def uptime(self) -> float:
        """Seconds since the agent started."""
        ...

    def checks_running(self) -> int:
        """Checks in flight right now."""
        ...

    def problems(self) -> list[str]:
        """What keeps the agent from doing its job right now (Docker unreachable, writes failing,
        the database not answering)."""
        ...

    def outbox(self) -> OutboxFigures:
        """The outbox's figures as last read from the store (kept in memory, never read here)."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxFigures:
    """Events waiting and given up on, and when the oldest waiting one was stored (epoch seconds)."""

    pending: int = 0
    dead: int = 0
    oldest_pending_at: float | None = None
    pending_by_notifier: Mapping[str, int] = field(default_factory=dict)


class ReloadDesk(Protocol):
    """The config as loaded, the last reload, and a reload on request."""

    def config_loaded_at(self) -> float:
        """When the running config was read from its file (epoch seconds)."""
        ...

    def last_reload(self) -> dict[str, Any] | None:
        """The last reload's result (``ReloadResult.view()``); None before the first."""
        ...

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file, apply it (or refuse it as a whole), and say what came of it."""
        ...


class CheckBoard(Protocol):
    """Every configured check's latest state."""

    def check_views(self) -> Sequence[CheckView]: ...


class IncidentReader(Protocol):
    """Read access to incidents and their evidence."""

    async def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]: ...

    async def incident(self, incident_id: str) -> dict[str, Any] | None: ...

    async def evidence(self, incident_id: str) -> dict[str, Any]: ...


class DeliveryDesk(Protocol):
    """The outbox's deliveries: read them, and put a dead one back in the queue."""

    async def list_deliveries(self, status: str | None, notifier: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first; times as epoch seconds."""
        ...

    async def retry_delivery(self, delivery_id: int) -> RetryAnswer:
        """Queue a dead delivery for an attempt now, and wake the outbox."""
        ...


class IncidentDesk(Protocol):
    """The commands of the people running incidents (the engine, the one writer, carries them out).
    Each answers the incident as it now is (internal comments included), raises ``UnknownIncident``
    for an unknown id and ``IncidentConflict`` when the command makes no sense in its state."""

    async def acknowledge(self, incident_id: str, by: str) -> dict[str, Any]: ...

    async def comment(self, incident_id: str, author: str, text: str, internal: bool = False) -> dict[str, Any]: ...

    async def post_update(self, incident_id: str, phase: str, message: str, author: str) -> dict[str, Any]: ...

    async def open_manual(
        self,
        title: str,
        severity: str,
        by: str,
        *,
        description: str | None = None,
        affected_services: Sequence[str] = (),
        tags: Sequence[str] = (),
        assignee: str | None = None,
    ) -> dict[str, Any]: ...

    async def patch(self, incident_id: str, changes: IncidentPatch, by: str) -> dict[str, Any]: ...

    async def resolve(
        self,
        incident_id: str,
        by: str,
        *,
        root_cause: str | None = None,
        solution: str | None = None,
        follow_ups: Sequence[str] | None = None,
    ) -> dict[str, Any]: ...


class SilenceDesk(Protocol):
    """Silences: made, listed (active and recently expired) and ended; ``UnknownSilence`` for an unknown id."""

    async def add_silence(
        self, match: Match, ends_at: float, comment: str | None, created_by: str
    ) -> dict[str, Any]: ...

    async def silences(self) -> list[dict[str, Any]]: ...

    async def remove_silence(self, silence_id: str) -> dict[str, Any]: ...


class StatusSource(Protocol):
    """The public status page's document (``agent.status_page.build_status``); None while the page
    is switched off (``agent.status_page: false``), read at each request so a reload applies."""

    async def status_document(self) -> dict[str, Any] | None: ...


class ReportSource(Protocol):
    """The incident report (``agent.reports.incident_report``) of the incidents opened in a period."""

    async def incident_report(self, since: float, until: float) -> dict[str, Any]: ...


class ApiRefusal(Exception):
    """A request the API refuses: its status, code and message, in the error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


class BadParameter(ApiRefusal):
    """A write body's field is missing, unknown or of the wrong shape: a 400 naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(400, "bad_parameter", f"{field}: {message}", field)


@dataclass(frozen=True, slots=True)
class RetryAnswer:
    """What asking for a retry came to: the delivery as it now is (None: no such delivery), or why not."""

    delivery: dict[str, Any] | None
    refused: str | None = None  # "delivery 12 is pending, not dead"


@dataclass(frozen=True, slots=True)
class _Sources:
    agent_name: str
    token: Callable[[], str | None]
    health: HealthFacts
    board: CheckBoard
    incidents: IncidentReader
    deliveries: DeliveryDesk
    clock: Callable[[], float]
    metrics: MetricsWriter | None = None
    reloads: ReloadDesk | None = None
    desk: IncidentDesk | None = None
    silences: SilenceDesk | None = None
    status: StatusSource | None = None
    reports: ReportSource | None = None


SOURCES = web.AppKey("lifeguard.api", _Sources)


def create_app(
    *,
    agent_name: str,
    token: str | None | Callable[[], str | None],
    health: HealthFacts,
    board: CheckBoard,
    incidents: IncidentReader,
    deliveries: DeliveryDesk,
    clock: Callable[[], float] = time.time,
    reloads: ReloadDesk | None = None,
    metrics: MetricsWriter | None = None,
    desk: IncidentDesk | None = None,
    silences: SilenceDesk | None = None,
    status: StatusSource | None = None,
    reports: ReportSource | None = None,
) -> web.Application:
    """The API's app. ``token`` may be a callable, read at each request (a reload may change it);
    ``metrics`` writes ``/metrics`` (without it, that route answers 404)."""
    app = web.Application(middlewares=[_errors_and_auth])
    token_of = token if callable(token) else (lambda: token)
    app[SOURCES] = _Sources(
        agent_name, lambda: token_of() or None, health, board, incidents, deliveries, clock, metrics, reloads, desk,
        silences,
        status,
        reports,
    )
    app.router.add_get("/health", health_route)
    app.router.add_get("/api/checks", checks_route)
    app.router.add_get("/api/incidents", incidents_route)
    app.router.add_post("/api/incidents", open_incident_route)
    app.router.add_get("/api/incidents/{id}", incident_route)
    app.router.add_patch("/api/incidents/{id}", patch_route)
    app.router.add_post("/api/incidents/{id}/ack", ack_route)
    app.router.add_post("/api/incidents/{id}/comments", comment_route)
    app.router.add_post("/api/incidents/{id}/updates", update_route)
    app.router.add_post("/api/incidents/{id}/resolve", resolve_route)
    app.router.add_get("/api/incidents/{id}/evidence", evidence_route)
    app.router.add_get("/api/deliveries", deliveries_route)
    app.router.add_post("/api/deliveries/{id}/retry", retry_route)
    app.router.add_get("/api/silences", silences_route)
    app.router.add_post("/api/silences", add_silence_route)
    app.router.add_delete("/api/silences/{id}", remove_silence_route)
    app.router.add_post("/api/reload", reload_route)
    app.router.add_get("/api/reports/incidents", incident_report_route)
    app.router.add_get("/api/openapi.json", openapi_route)
    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/status", status_page_route)
    app.router.add_get("/status.json", status_json_route)
    return app


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer aiohttp's own errors in the API's error shape.

    aiohttp answers a request its parser refuses (a malformed request line, an oversized header,
    an unknown method) before any middleware runs, in text/plain, and logs a traceback; it offers
    no hook for it (aio-libs/aiohttp#3287), so the runner's server builds ``_JsonErrorProtocol``
    connections instead of plain ones.
    """

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _JsonErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorProtocol(self, loop=self._loop, **self._kwargs)


_PARSER_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "request line or header too long"),
    (http_exceptions.BadHttpMethod, "unknown or malformed method"),
    (http_exceptions.BadStatusLine, "malformed request line"),
    (http_exceptions.InvalidHeader, "malformed header"),
)


class _JsonErrorProtocol(RequestHandler):
    """A connection that answers the errors aiohttp handles itself as JSON, with one log line."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # the answer has begun: nothing can be said any more
            raise ConnectionError("response already started, cannot answer an error")
        said = next((text for kind, text in _PARSER_ERRORS if isinstance(exc, kind)), None)
        if said is None:
            said = "malformed request" if status < 500 else HTTPStatus(status).phrase.lower()
        if status >= 500:
            log.error("api.failed", status=status, error=repr(exc), exc_info=exc)
        else:
            log.info("api.bad_request", status=status, reason=said, peer=request.remote)
        resp = error(status, HTTPStatus(status).phrase.lower().replace(" ", "_"), said)
        resp.force_close()
        return resp


def error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status)


def _shown(value: str) -> str:
    """A client's value as quoted in an error message, cut short."""
    return repr(value if len(value) <= SHOWN else value[:SHOWN] + "…")


def bearer(header: str) -> str | None:
    """The credentials of an ``Authorization: Bearer …`` header; the scheme in any case, spaces
    around the credentials ignored (RFC 7235 §2.1, RFC 6750 §2.1); None for any other scheme."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def _authorized(given: str | None, token: str) -> bool:
    if given is None:
        return False
    # Headers arrive decoded with surrogateescape: bytes that are not UTF-8 compare as bytes.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


def checks_status(views: Iterable[CheckView]) -> list[dict[str, Any]]:
    """The ``/api/checks`` list: each check's state and last result."""
    return [
        {
            "name": v.name,
            "type": v.type,
            "target": v.target,
            "state": "unknown" if v.last is None else ("passing" if v.last.ok else "failing"),
            "incident_id": v.incident_id,
            "last_result": None if v.last is None else _last_result(v),
            "flapping": v.flapping,
            "baseline_ms": None if v.baseline is None else round(v.baseline * 1000, 1),
        }
        for v in views
    ]


def _last_result(view: CheckView) -> dict[str, Any]:
    assert view.last is not None
    short = view.last.summary()
    short.pop("warning", None)  # status says it
    return dict(short, at=iso(view.last.started_at), status=view.last.status, details=view.details)


@web.middleware
async def _errors_and_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    token = request.app[SOURCES].token()
    if token and request.path not in PUBLIC_PATHS:
        if not _authorized(bearer(request.headers.get("Authorization", "")), token):
            return error(401, "unauthorized", "missing or wrong bearer token")
    try:
        return await handler(request)
    except ApiRefusal as exc:
        return error(exc.status, exc.code, str(exc), exc.field)
    except UnknownIncident as exc:
        return error(404, "not_found", f"no incident {exc.args[0]}")
    except UnknownSilence as exc:
        return error(404, "not_found", f"no silence {exc.args[0]}")
    except IncidentConflict as exc:
        return error(409, "conflict", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        answer = error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        for name, value in exc.headers.items():  # e.g. a 405's Allow
            if name.lower() not in ("content-type", "content-length"):
                answer.headers[name] = value
        return answer
    except Exception as exc:
        log.error("api.failed", path=request.path, error=repr(exc), exc_info=exc)
        return error(500, "internal_error", "the agent failed to answer; see its log")


async def health_route(request: web.Request) -> web.Response:
    """From memory only: never waits for the store."""
    src = request.app[SOURCES]
    figures = src.health.outbox()
    problems = list(src.health.problems())
    last_reload = None if src.reloads is None else src.reloads.last_reload()
    if last_reload is not None and not last_reload["ok"]:
        problems.append(f"last reload refused ({len(last_reload['errors'])} errors); the previous config runs")
    if figures.oldest_pending_at is not None:
        age = src.clock() - figures.oldest_pending_at
        if age > PENDING_TOO_LONG:
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
            "outbox_pending": figures.pending,
            "outbox_dead": figures.dead,
            "config_loaded_at": None if src.reloads is None else iso(src.reloads.config_loaded_at()),
            "last_reload": last_reload,
        }
    )


async def reload_route(request: web.Request) -> web.Response:
    """Re-read the config file and apply it; answers what came of it (applied or refused)."""
    reloads = request.app[SOURCES].reloads
    if reloads is None:
        return error(404, "not_found", "this agent cannot reload")
    log.info("reload.requested", source="api", peer=request.remote)
    return web.json_response(await reloads.reload())


async def checks_route(request: web.Request) -> web.Response:
    return web.json_response({"checks": checks_status(request.app[SOURCES].board.check_views())})


async def incidents_route(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in INCIDENT_STATUSES:
        expected = ", ".join(INCIDENT_STATUSES)
        return error(400, "bad_parameter", f"status: expected one of {expected}, got {_shown(status)}")
    limit = _limit(request)
    if isinstance(limit, web.Response):
        return limit
    rows = await request.app[SOURCES].incidents.list_incidents(status, limit)
    return web.json_response({"incidents": rows})


def _limit(request: web.Request) -> int | web.Response:
    raw_limit = request.query.get("limit", "50")
    if not LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= 1000:
        return error(400, "bad_parameter", f"limit: expected an integer 1..1000, got {_shown(raw_limit)}")
    return int(raw_limit)


def delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    """One delivery as the API shows it: times in ISO, the next attempt only while one is due."""
    pending = row["status"] == "pending"
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "event": row["event"],
        "incident_id": row["incident_id"],
        "notifier": row["notifier"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "next_attempt_at": iso(row["next_attempt_at"]) if pending else None,
        "delivered_at": iso(row["delivered_at"]),
    }


async def deliveries_route(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        expected = ", ".join(DELIVERY_STATUSES)
        return error(400, "bad_parameter", f"status: expected one of {expected}, got {_shown(status)}")
    notifier = request.query.get("notifier")
    if notifier is not None and not notifier.strip():
        return error(400, "bad_parameter", "notifier: expected a notifier name, got ''")
    limit = _limit(request)
    if isinstance(limit, web.Response):
        return limit
    rows = await request.app[SOURCES].deliveries.list_deliveries(status, notifier, limit)
    return web.json_response({"deliveries": [delivery_view(row) for row in rows]})


async def retry_route(request: web.Request) -> web.Response:
    raw_id = request.match_info["id"]
    if not DELIVERY_ID.fullmatch(raw_id):
        return error(400, "bad_id", f"not a delivery id: {_shown(raw_id)}")
    answer = await request.app[SOURCES].deliveries.retry_delivery(int(raw_id))
    if answer.delivery is None:
        return error(404, "not_found", f"no delivery {int(raw_id)}")
    if answer.refused is not None:
        return error(409, "conflict", answer.refused)
    log.info("delivery.requeued", delivery_id=answer.delivery["id"], notifier=answer.delivery["notifier"])
    return web.json_response(delivery_view(answer.delivery))


async def _known_incident(request: web.Request) -> tuple[str, dict[str, Any] | web.Response]:
    incident_id = request.match_info["id"]
    if not INCIDENT_ID.match(incident_id):
        return incident_id, error(400, "bad_id", f"not an incident id: {_shown(incident_id)}")
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


# -- running incidents ------------------------------------------------------------------------
async def _body(request: web.Request, allowed: Iterable[str]) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``), with no key but those allowed."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadParameter("body", "expected a JSON object") from None
    if not isinstance(body, dict):
        raise BadParameter("body", f"expected a JSON object, got {type(body).__name__}")
    known = set(allowed)
    for key in body:
        if key not in known:
            raise BadParameter(key, f"unknown field (expected some of: {', '.join(allowed)})")
    return body


def _text(body: dict[str, Any], name: str, *, default: str | None = None, most: int = NAME_MAX) -> str | None:
    """A string field: present and not blank, or absent (``default``); never null."""
    if name not in body:
        return default
    value = body[name]
    if not isinstance(value, str):
        raise BadParameter(name, f"expected a string, got {_json_type(value)}")
    if not value.strip():
        raise BadParameter(name, "expected text, got a blank string")
    if len(value) > most:
        raise BadParameter(name, f"expected at most {most} characters, got {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter(name, "expected valid Unicode text") from None
    return value


def _required(body: dict[str, Any], name: str, *, most: int = NAME_MAX) -> str:
    value = _text(body, name, most=most)
    if value is None:
        raise BadParameter(name, "required")
    return value


def _texts(body: dict[str, Any], name: str) -> list[str] | None:
    """A list of short strings (tags, services, follow-ups), or None when absent."""
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, list):
        raise BadParameter(name, f"expected a list of strings, got {_json_type(value)}")
    if len(value) > LIST_MAX:
        raise BadParameter(name, f"expected at most {LIST_MAX} items, got {len(value)}")
    return [str(_text({f"{name}[{i}]": v}, f"{name}[{i}]", most=TEXT_MAX if name == "follow_ups" else NAME_MAX))
            for i, v in enumerate(value)]


def _choice(body: dict[str, Any], name: str, choices: Sequence[str]) -> str | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str) or value not in choices:
        shown = _shown(value) if isinstance(value, str) else _json_type(value)
        raise BadParameter(name, f"expected one of {', '.join(choices)}, got {shown}")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadParameter(name, f"expected true or false, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _desk(request: web.Request) -> IncidentDesk:
    desk = request.app[SOURCES].desk
    if desk is None:
        raise ApiRefusal(404, "not_found", "this agent takes no incident commands")
    return desk


def _incident_id(request: web.Request) -> str:
    incident_id = request.match_info["id"]
    if not INCIDENT_ID.match(incident_id):
        raise ApiRefusal(400, "bad_id", f"not an incident id: {_shown(incident_id)}")
    return incident_id


async def open_incident_route(request: web.Request) -> web.Response:
    """Open an incident by hand (201): tied to no check, so never resolved by recovery nor healed."""
    desk = _desk(request)
    fields = ("title", "severity", "description", "affected_services", "tags", "assignee", "by")
    body = await _body(request, fields)
    title = _required(body, "title")
    severity = _choice(body, "severity", SEVERITIES)
    if severity is None:
        raise BadParameter("severity", f"required (one of {', '.join(SEVERITIES)})")
    found = await desk.open_manual(
        title,
        severity,
        _text(body, "by", default="api") or "api",
        description=_text(body, "description", most=TEXT_MAX),
        affected_services=_texts(body, "affected_services") or [],
        tags=_texts(body, "tags") or [],
        assignee=_text(body, "assignee"),
    )
    return web.json_response(found, status=201)


async def patch_route(request: web.Request) -> web.Response:
    """Change severity, assignee or tags; resolution fields also after the incident is resolved."""
    incident_id = _incident_id(request)
    desk = _desk(request)
    fields = ("severity", "assignee", "tags", "root_cause", "solution", "follow_ups", "by")
    body = await _body(request, fields)
    changes = IncidentPatch(
        severity=_choice(body, "severity", SEVERITIES),
        assignee=_text(body, "assignee"),
        tags=_texts(body, "tags"),
        root_cause=_text(body, "root_cause", most=TEXT_MAX),
        solution=_text(body, "solution", most=TEXT_MAX),
        follow_ups=_texts(body, "follow_ups"),
    )
    return web.json_response(await desk.patch(incident_id, changes, _text(body, "by", default="api") or "api"))


async def ack_route(request: web.Request) -> web.Response:
    incident_id = _incident_id(request)
    desk = _desk(request)
    body = await _body(request, ("by",))
    return web.json_response(await desk.acknowledge(incident_id, _text(body, "by", default="api") or "api"))


async def comment_route(request: web.Request) -> web.Response:
    incident_id = _incident_id(request)
    desk = _desk(request)
    body = await _body(request, ("text", "author", "internal"))
    text = _required(body, "text", most=TEXT_MAX)
    author = _text(body, "author", default="api") or "api"
    return web.json_response(await desk.comment(incident_id, author, text, _flag(body, "internal")), status=201)


async def update_route(request: web.Request) -> web.Response:
    incident_id = _incident_id(request)
    desk = _desk(request)
    body = await _body(request, ("phase", "message", "author"))
    phase = _choice(body, "phase", PHASES[:-1])  # resolving is its own command
    if phase is None:
        raise BadParameter("phase", f"required (one of {', '.join(PHASES[:-1])})")
    message = _required(body, "message", most=TEXT_MAX)
    author = _text(body, "author", default="api") or "api"
    return web.json_response(await desk.post_update(incident_id, phase, message, author), status=201)


async def resolve_route(request: web.Request) -> web.Response:
    incident_id = _incident_id(request)
    desk = _desk(request)
    body = await _body(request, ("by", "root_cause", "solution", "follow_ups"))
    found = await desk.resolve(
        incident_id,
        _text(body, "by", default="api") or "api",
        root_cause=_text(body, "root_cause", most=TEXT_MAX),
        solution=_text(body, "solution", most=TEXT_MAX),
        follow_ups=_texts(body, "follow_ups"),
    )
    return web.json_response(found)


# -- silences -------------------------------------------------------------------------------
def _silence_desk(request: web.Request) -> SilenceDesk:
    desk = request.app[SOURCES].silences
    if desk is None:
        raise ApiRefusal(404, "not_found", "this agent takes no silences")
    return desk


async def silences_route(request: web.Request) -> web.Response:
    """Active silences and those expired recently, newest first."""
    return web.json_response(await _silence_desk(request).silences())


async def add_silence_route(request: web.Request) -> web.Response:
    """A silence (201): what it matches, for a ``duration`` or until ``ends_at``."""
    desk = _silence_desk(request)
    body = await _body(request, ("match", "duration", "ends_at", "comment", "created_by"))
    raw = body.get("match")
    if not isinstance(raw, dict):
        raise BadParameter("match", f"required: an object with check, tags or container, got {_json_type(raw)}")
    for key in raw:
        if key not in ("check", "tags", "container"):
            raise BadParameter(f"match.{key}", "unknown field (expected some of: check, tags, container)")
    fields: dict[str, Any] = {}
    for key in ("check", "tags", "container"):
        if key in raw:
            fields[key] = _texts({f"match.{key}": raw[key]}, f"match.{key}")
            if not fields[key]:
                raise BadParameter(f"match.{key}", "expected at least one value")
    match = Match.of(fields)
    if match.empty:
        raise BadParameter("match", "give at least one check, tag or container")
    now = request.app[SOURCES].clock()
    if ("duration" in body) == ("ends_at" in body):
        raise BadParameter("duration", "give either duration or ends_at")
    if "duration" in body:
        text = _required(body, "duration")
        if not SILENCE_DURATION.fullmatch(text):
            raise BadParameter("duration", f"expected a duration like 30m, 2h or 3d, got {_shown(text)}")
        ends_at = now + parse_duration(text)
    else:  # a time already past makes a silence that is expired from the start
        ends_at = _timestamp(_required(body, "ends_at"), "ends_at")
    found = await desk.add_silence(
        match, ends_at, _text(body, "comment", most=TEXT_MAX), _text(body, "created_by", default="api") or "api"
    )
    return web.json_response(found, status=201)


def _timestamp(text: str, name: str) -> float:
    """An ISO-8601 time with a zone (``Z`` or an offset), as epoch seconds."""
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadParameter(name, f"expected an ISO-8601 time like 2026-11-29T10:00:00Z, got {_shown(text)}") from None
    if parsed.tzinfo is None:
        raise BadParameter(name, "expected a time zone (Z or an offset)")
    return parsed.timestamp()


async def remove_silence_route(request: web.Request) -> web.Response:
    """End a silence now; it stays listed as expired for a while."""
    silence_id = request.match_info["id"]
    if not SILENCE_ID.match(silence_id):
        raise ApiRefusal(400, "bad_id", f"not a silence id: {_shown(silence_id)}")
    return web.json_response(await _silence_desk(request).remove_silence(silence_id))


async def incident_report_route(request: web.Request) -> web.Response:
    """How the incidents opened in the last ``since`` (default 30d) went: MTTA, MTTR, MTTD, SLAs, targets."""
    src = request.app[SOURCES]
    if src.reports is None:
        raise ApiRefusal(404, "not_found", "this agent makes no reports")
    raw = request.query.get("since", "30d")
    if not REPORT_SINCE.fullmatch(raw):
        raise BadParameter("since", f"expected a duration like 24h, 7d or 30d, got {_shown(raw)}")
    until = src.clock()
    return web.json_response(await src.reports.incident_report(until - parse_duration(raw), until))


@cache
def openapi_document() -> bytes:
    """The OpenAPI 3.1 document of these routes, as shipped in the package."""
    raw = OPENAPI.read_bytes()
    json.loads(raw)  # a broken document fails here, not in a client
    return raw


async def openapi_route(request: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


async def metrics_route(request: web.Request) -> web.StreamResponse:
    """Prometheus's text format, streamed as it is written: the event loop runs checks between
    slices, and the whole answer (megabytes at thousands of checks) is never held at once."""
    write = request.app[SOURCES].metrics
    if write is None:
        return error(404, "not_found", "this agent serves no metrics")
    response = web.StreamResponse(headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def out(chunk: bytes) -> None:
        if not response.prepared:  # the headers go with the first slice: a failure before it is a 500
            await response.prepare(request)
        await response.write(chunk)

    try:
        await write(out)
    except ConnectionResetError:  # the scraper went away mid-answer (its timeout, say): no one to tell
        log.debug("api.metrics_abandoned")
        return response
    if not response.prepared:
        await response.prepare(request)
    await response.write_eof()
    return response


async def _status_document(request: web.Request) -> dict[str, Any]:
    source = request.app[SOURCES].status
    document = None if source is None else await source.status_document()
    if document is None:
        raise ApiRefusal(404, "not_found", "this agent serves no status page")
    return document


async def status_json_route(request: web.Request) -> web.Response:
    """The public status page's data; no token needed, nothing internal in it."""
    return web.json_response(await _status_document(request))


async def status_page_route(request: web.Request) -> web.Response:
    """The public status page as HTML (Jinja2, no JavaScript); no token needed."""
    from agent.status_page import render_html

    return web.Response(text=render_html(await _status_document(request)), content_type="text/html")
