"""The HTTP API against small in-test sources: auth, error shapes (aiohttp's own included), /health,
/api/checks, incidents, the OpenAPI document; and /health of a real agent whose database another
process holds."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from agent.api import ApiRunner, CheckView, OutboxFigures, RetryAnswer, checks_status, create_app
from checks.base import CheckResult
from tests.fixtures_agent import agent_config, free_port, poll

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
INC = "inc_0123456789abcdef"


@dataclass
class Facts:
    uptime_s: float = 12.34
    running: int = 1
    docker: str | None = None
    figures: OutboxFigures = field(default_factory=OutboxFigures)

    def uptime(self) -> float:
        return self.uptime_s

    def checks_running(self) -> int:
        return self.running

    def problems(self) -> list[str]:
        return [f"docker unreachable: {self.docker}"] if self.docker else []

    def outbox(self) -> OutboxFigures:
        return self.figures


@dataclass
class Board:
    views: list[CheckView] = field(default_factory=list)

    def check_views(self) -> Sequence[CheckView]:
        return self.views


@dataclass
class Reader:
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: list[tuple[str | None, int]] = field(default_factory=list)

    async def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        self.asked.append((status, limit))
        return [{"id": i, "status": inc["status"]} for i, inc in self.incidents.items()]

    async def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.incidents.get(incident_id)

    async def evidence(self, incident_id: str) -> dict[str, Any]:
        return {"opened": {"phase": "opened"}, "resolved": None}


@dataclass
class Desk:
    """The outbox's deliveries, as a dict by id; ``retry_delivery`` acts as the daemon's does."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    asked: list[tuple[str | None, str | None, int]] = field(default_factory=list)

    async def list_deliveries(self, status: str | None, notifier: str | None, limit: int) -> list[dict[str, Any]]:
        self.asked.append((status, notifier, limit))
        return sorted(self.rows.values(), key=lambda r: -r["id"])[:limit]

    async def retry_delivery(self, delivery_id: int) -> RetryAnswer:
        row = self.rows.get(delivery_id)
        if row is None or row["status"] != "dead":
            return RetryAnswer(row, None if row is None else f"delivery {delivery_id} is {row['status']}, not dead")
        row.update(status="pending", next_attempt_at=T0)
        return RetryAnswer(row)


@dataclass
class Sources:
    health: Facts = field(default_factory=Facts)
    board: Board = field(default_factory=Board)
    incidents: Reader = field(default_factory=Reader)
    deliveries: Desk = field(default_factory=Desk)


Client = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def api() -> AsyncIterator[Client]:
    clients: list[TestClient] = []

    async def make(sources: Sources | None = None, token: str | None = None) -> TestClient:
        s = sources or Sources()
        app = create_app(
            agent_name="web-01", token=token, health=s.health, board=s.board, incidents=s.incidents,
            deliveries=s.deliveries, clock=lambda: T0,
        )
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def get(client: TestClient, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.get(path, headers=headers) as r:
        return r.status, await r.json()


async def test_health_reports_the_agent(api: Client) -> None:
    s = Sources(board=Board([CheckView("a", "tcp", "h:1", None, None), CheckView("b", "tcp", "h:2", None, None)]))
    s.health.figures = OutboxFigures(pending=3, dead=1, oldest_pending_at=T0 - 5.0)
    status, body = await get(await api(s), "/health")
    assert status == 200
    assert body == {
        "status": "ok", "problems": [], "version": "0.1.0", "agent": "web-01", "uptime_s": 12.3,
        "checks": 2, "checks_running": 1, "outbox_pending": 3, "outbox_dead": 1,
        "config_loaded_at": None, "last_reload": None,
    }


async def test_health_is_degraded_when_docker_is_unreachable_or_events_wait_too_long(api: Client) -> None:
    s = Sources(health=Facts(docker="Docker unreachable at unix:///x.sock: No such file or directory"))
    s.health.figures = OutboxFigures(pending=1, dead=0, oldest_pending_at=T0 - 61.4)
    status, body = await get(await api(s), "/health")
    assert status == 200 and body["status"] == "degraded"
    assert body["problems"] == [
        "docker unreachable: Docker unreachable at unix:///x.sock: No such file or directory",
        "events pending for 61s",
    ]


async def test_a_token_guards_every_route_but_health(api: Client) -> None:
    client = await api(token="t0ken")
    assert (await get(client, "/health"))[0] == 200
    for path in ("/api/checks", "/api/incidents", f"/api/incidents/{INC}", "/nope"):
        status, body = await get(client, path)
        assert status == 401 and body == {
            "error": {"code": "unauthorized", "message": "missing or wrong bearer token"}
        }, path
        assert (await get(client, path, token="wrong"))[0] == 401
    assert (await get(client, "/api/checks", token="t0ken"))[0] == 200


async def test_without_a_token_every_route_is_open(api: Client) -> None:
    assert (await get(await api(token=""), "/api/incidents"))[0] == 200


async def test_checks_shows_state_incident_and_last_result(api: Client) -> None:
    views = [
        CheckView("web", "http", "http://127.0.0.1/health", CheckResult("web", False, T0, 0.0123, "HTTP 500"), INC),
        CheckView("db", "tcp", "127.0.0.1:5432", CheckResult("db", True, T0 + 1, 0.001, "connected"), None,
                  flapping=True, baseline=0.00123),
        CheckView("disk", "command", "check_disk", CheckResult("disk", True, T0 + 2, 0.002, "DISK WARNING", warning=True),
                  None, {"perfdata": [{"label": "/", "value": 91.0, "uom": "%"}]}),
        CheckView("new", "tcp", "127.0.0.1:1", None, None),
    ]
    status, body = await get(await api(Sources(board=Board(views))), "/api/checks")
    assert status == 200
    assert body == {"checks": [
        {"name": "web", "type": "http", "target": "http://127.0.0.1/health", "state": "failing", "incident_id": INC,
         "last_result": {"at": "2026-11-18T11:06:40.000Z", "ok": False, "latency_ms": 12.3, "message": "HTTP 500",
                         "status": "failing", "details": {}}, "flapping": False, "baseline_ms": None},
        {"name": "db", "type": "tcp", "target": "127.0.0.1:5432", "state": "passing", "incident_id": None,
         "last_result": {"at": "2026-11-18T11:06:41.000Z", "ok": True, "latency_ms": 1.0, "message": "connected",
                         "status": "ok", "details": {}}, "flapping": True, "baseline_ms": 1.2},
        {"name": "disk", "type": "command", "target": "check_disk", "state": "passing", "incident_id": None,
         "last_result": {"at": "2026-11-18T11:06:42.000Z", "ok": True, "latency_ms": 2.0, "message": "DISK WARNING",
                         "status": "warning", "details": {"perfdata": [{"label": "/", "value": 91.0, "uom": "%"}]}},
         "flapping": False, "baseline_ms": None},
        {"name": "new", "type": "tcp", "target": "127.0.0.1:1", "state": "unknown", "incident_id": None,
         "last_result": None, "flapping": False, "baseline_ms": None},
    ]}
    assert checks_status(views) == body["checks"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=bogus", "status: expected one of open, acknowledged, resolved, got 'bogus'"),
        ("limit=0", "limit: expected an integer 1..1000, got '0'"),
        ("limit=1001", "limit: expected an integer 1..1000, got '1001'"),
        ("limit=-3", "limit: expected an integer 1..1000, got '-3'"),
        ("limit=ten", "limit: expected an integer 1..1000, got 'ten'"),
    ],
)
async def test_bad_incident_list_parameters_are_400(api: Client, query: str, message: str) -> None:
    status, body = await get(await api(), f"/api/incidents?{query}")
    assert status == 400 and body == {"error": {"code": "bad_parameter", "message": message}}


async def test_incident_list_passes_status_and_limit(api: Client) -> None:
    s = Sources()
    s.incidents.incidents[INC] = {"id": INC, "status": "open"}
    client = await api(s)
    status, body = await get(client, "/api/incidents")
    assert status == 200 and body == {"incidents": [{"id": INC, "status": "open"}]}
    await get(client, "/api/incidents?status=resolved&limit=1000")
    assert s.incidents.asked == [(None, 50), ("resolved", 1000)]


async def test_incident_and_evidence_by_id(api: Client) -> None:
    s = Sources()
    s.incidents.incidents[INC] = {"id": INC, "status": "open", "timeline": []}
    client = await api(s)
    assert await get(client, f"/api/incidents/{INC}") == (200, {"id": INC, "status": "open", "timeline": []})
    assert await get(client, f"/api/incidents/{INC}/evidence") == (200, {"opened": {"phase": "opened"}, "resolved": None})


@pytest.mark.parametrize("suffix", ["", "/evidence"])
async def test_bad_and_unknown_incident_ids(api: Client, suffix: str) -> None:
    client = await api()
    status, body = await get(client, f"/api/incidents/not-an-id{suffix}")
    assert status == 400 and body == {"error": {"code": "bad_id", "message": "not an incident id: 'not-an-id'"}}
    status, body = await get(client, f"/api/incidents/{INC}{suffix}")
    assert status == 404 and body == {"error": {"code": "not_found", "message": f"no incident {INC}"}}


async def test_an_unknown_route_is_a_404_in_the_error_shape(api: Client) -> None:
    status, body = await get(await api(), "/nope")
    assert status == 404 and body == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_health_answers_from_memory_and_never_asks_the_incident_reader(api: Client) -> None:
    class Stuck(Reader):
        async def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]:
            await asyncio.Event().wait()
            return []

    s = Sources(incidents=Stuck())
    s.health.figures = OutboxFigures(pending=2, dead=0, oldest_pending_at=T0 - 1)
    status, body = await get(await api(s), "/health")
    assert status == 200 and (body["status"], body["outbox_pending"]) == ("ok", 2)


@pytest.mark.parametrize("header", ["Bearer t0ken", "bearer t0ken", "BEARER   t0ken", "  Bearer t0ken  ", "BeArEr t0ken"])
async def test_the_bearer_scheme_is_case_insensitive_and_tolerates_extra_spaces(api: Client, header: str) -> None:
    client = await api(token="t0ken")
    async with client.get("/api/checks", headers={"Authorization": header}) as r:
        assert r.status == 200, header


@pytest.mark.parametrize("header", ["t0ken", "Basic t0ken", "Bearert0ken", "Bearer", "Bearer t0ken extra", "Bearer T0KEN"])
async def test_anything_but_the_bearer_token_is_refused(api: Client, header: str) -> None:
    client = await api(token="t0ken")
    async with client.get("/api/checks", headers={"Authorization": header}) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized", header


@pytest.mark.parametrize("limit", ["²", "①", "٣", "1" * 5000, "+5", " 5", "5\n", "1e3", "0x10"])
async def test_a_limit_of_anything_but_ascii_digits_is_a_bad_parameter(api: Client, limit: str) -> None:
    client = await api()
    async with client.get("/api/incidents", params={"limit": limit}) as r:
        body = await r.json()
    assert r.status == 400 and body["error"]["code"] == "bad_parameter"
    assert len(body["error"]["message"]) < 100  # a 5,000-digit value is not echoed whole


async def test_an_exception_in_a_route_is_a_500_in_the_error_shape_and_logged(api: Client) -> None:
    class Broken(Reader):
        async def incident(self, incident_id: str) -> dict[str, Any] | None:
            raise RuntimeError("disk on fire")

    with capture_logs() as logs:
        status, body = await get(await api(Sources(incidents=Broken())), f"/api/incidents/{INC}")
    assert status == 500 and body == {
        "error": {"code": "internal_error", "message": "the agent failed to answer; see its log"}
    }
    assert [e["event"] for e in logs] == ["api.failed"] and "disk on fire" in logs[0]["error"]


async def test_another_method_is_a_405_in_the_error_shape_that_keeps_its_allow_header(api: Client) -> None:
    async with (await api()).post("/api/checks") as r:
        assert r.status == 405 and await r.json() == {
            "error": {"code": "method_not_allowed", "message": "Method Not Allowed"}
        }
        assert set(r.headers["Allow"].split(",")) == {"GET", "HEAD"}  # RFC 9110 §15.5.6


async def test_the_openapi_document_is_served_and_names_every_route(api: Client) -> None:
    client = await api(token="t0ken")
    assert (await get(client, "/api/openapi.json"))[0] == 401
    status, doc = await get(client, "/api/openapi.json", token="t0ken")
    assert status == 200 and doc["openapi"].startswith("3.1")
    app = create_app(
        agent_name="x", token=None, health=Facts(), board=Board(), incidents=Reader(), deliveries=Desk()
    )
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    documented = {(m, path) for path, ops in doc["paths"].items() for m in ops}
    assert documented == {(m, p) for m, p in routes if m != "head"}


# -- aiohttp's own errors, over a real socket ----------------------------------------------------
@pytest.fixture
async def served() -> AsyncIterator[int]:
    """The API served as the daemon serves it (``ApiRunner``) on 127.0.0.1, with a token."""
    s = Sources()
    app = create_app(
        agent_name="web-01", token="t0ken", health=s.health, board=s.board, incidents=s.incidents,
        deliveries=s.deliveries,
    )
    runner = ApiRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def exchange(port: int, request: bytes) -> tuple[int, str, Any]:
    """Send raw bytes, read the answer until the server closes: status, content type, JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    return int(lines[0].split(" ")[1]), headers.get("content-type", ""), json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", "request line or header too long"),
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "request line or header too long"),
        (b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n", "unknown or malformed method"),
        (b"this is not http\r\n\r\n", None),
        (b"GET /health HTTP/9.9x\r\nHost: x\r\n\r\n", None),
        (b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n", None),
    ],
    ids=["100KB-header", "100KB-path", "method-FOO", "garbage", "bad-version", "bad-header"],
)
async def test_requests_aiohttp_cannot_parse_get_the_error_shape_and_no_traceback(
    served: int, caplog: pytest.LogCaptureFixture, request_bytes: bytes, message: str | None
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    with capture_logs() as logs:
        status, content_type, body = await exchange(served, request_bytes)
    assert status == 400 and content_type.startswith("application/json")
    assert body["error"]["code"] == "bad_request" and set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if message:
        assert body["error"]["message"] == message
    assert not [r for r in caplog.records if r.exc_info], "aiohttp logged a traceback"
    assert [(e["event"], e["log_level"]) for e in logs] == [("api.bad_request", "info")]


async def test_a_bearer_that_is_not_utf8_is_a_401(served: int) -> None:
    request = b"GET /api/checks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x80\r\nConnection: close\r\n\r\n"
    assert await exchange(served, request) == (
        401, "application/json; charset=utf-8", {"error": {"code": "unauthorized", "message": "missing or wrong bearer token"}}
    )


async def test_the_runner_still_serves_good_requests(served: int) -> None:
    request = b"GET /api/checks HTTP/1.1\r\nHost: x\r\nauthorization: bearer  t0ken\r\nConnection: close\r\n\r\n"
    assert await exchange(served, request) == (200, "application/json; charset=utf-8", {"checks": []})


# -- /health of a real agent while another process holds the database ----------------------------
async def test_health_answers_at_once_and_says_degraded_while_another_process_holds_the_database(
    tmp_path: Any, spawn_agent: Any
) -> None:
    """The store's busy timeout is 10 s; /health must not queue behind a write waiting that long."""
    cfg = agent_config([{"name": "closed", "type": "tcp", "host": "127.0.0.1", "port": free_port()}], [],
                       log_level="info")
    cfg["defaults"]["open_after"] = "1h"  # results only: every flush writes, no incident
    agent = spawn_agent(cfg)
    await agent.ready()

    async def health() -> dict[str, Any]:
        started = time.monotonic()
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{agent.api_port}/health") as r:
            body = await r.json()
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"/health took {elapsed:.1f}s with the database held"
        return dict(body)

    await poll(health, lambda b: b["status"] == "ok", 5, "/health ok")
    holder = sqlite3.connect(tmp_path / "state" / "lifeguard.db", isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        body = await poll(health, lambda b: b["status"] == "degraded", 9, "/health degraded")
        assert any(p.startswith("database has not answered for ") for p in body["problems"]), body
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await poll(health, lambda b: b["status"] == "ok", 15, "/health ok once the database is free")
