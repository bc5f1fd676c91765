"""The HTTP API against small in-test sources: auth, error shapes, /health, /api/checks, incidents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.api import CheckView, checks_status, create_app
from checks.base import CheckResult

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
INC = "inc_0123456789abcdef"


@dataclass
class Facts:
    uptime_s: float = 12.34
    running: int = 1
    docker: str | None = None

    def uptime(self) -> float:
        return self.uptime_s

    def checks_running(self) -> int:
        return self.running

    def problems(self) -> list[str]:
        return [f"docker unreachable: {self.docker}"] if self.docker else []


@dataclass
class Board:
    views: list[CheckView] = field(default_factory=list)

    def check_views(self) -> Sequence[CheckView]:
        return self.views


@dataclass
class Reader:
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=lambda: {"pending": 0, "dead": 0, "oldest_pending_age": None})
    asked: list[tuple[str | None, int]] = field(default_factory=list)

    async def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        self.asked.append((status, limit))
        return [{"id": i, "status": inc["status"]} for i, inc in self.incidents.items()]

    async def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.incidents.get(incident_id)

    async def evidence(self, incident_id: str) -> dict[str, Any]:
        return {"opened": {"phase": "opened"}, "resolved": None}

    async def outbox_stats(self, now: float) -> dict[str, Any]:
        return self.stats


@dataclass
class Sources:
    health: Facts = field(default_factory=Facts)
    board: Board = field(default_factory=Board)
    incidents: Reader = field(default_factory=Reader)


Client = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def api() -> AsyncIterator[Client]:
    clients: list[TestClient] = []

    async def make(sources: Sources | None = None, token: str | None = None) -> TestClient:
        s = sources or Sources()
        app = create_app(
            agent_name="web-01", token=token, health=s.health, board=s.board, incidents=s.incidents, clock=lambda: T0
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
    s.incidents.stats = {"pending": 3, "dead": 1, "oldest_pending_age": 5.0}
    status, body = await get(await api(s), "/health")
    assert status == 200
    assert body == {
        "status": "ok", "problems": [], "version": "0.1.0", "agent": "web-01", "uptime_s": 12.3,
        "checks": 2, "checks_running": 1, "outbox_pending": 3, "outbox_dead": 1,
    }


async def test_health_is_degraded_when_docker_is_unreachable_or_events_wait_too_long(api: Client) -> None:
    s = Sources(health=Facts(docker="Docker unreachable at unix:///x.sock: No such file or directory"))
    s.incidents.stats = {"pending": 1, "dead": 0, "oldest_pending_age": 61.4}
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
        CheckView("db", "tcp", "127.0.0.1:5432", CheckResult("db", True, T0 + 1, 0.001, "connected"), None),
        CheckView("new", "tcp", "127.0.0.1:1", None, None),
    ]
    status, body = await get(await api(Sources(board=Board(views))), "/api/checks")
    assert status == 200
    assert body == {"checks": [
        {"name": "web", "type": "http", "target": "http://127.0.0.1/health", "state": "failing", "incident_id": INC,
         "last_result": {"at": "2026-11-18T11:06:40.000Z", "ok": False, "latency_ms": 12.3, "message": "HTTP 500"}},
        {"name": "db", "type": "tcp", "target": "127.0.0.1:5432", "state": "passing", "incident_id": None,
         "last_result": {"at": "2026-11-18T11:06:41.000Z", "ok": True, "latency_ms": 1.0, "message": "connected"}},
        {"name": "new", "type": "tcp", "target": "127.0.0.1:1", "state": "unknown", "incident_id": None,
         "last_result": None},
    ]}
    assert checks_status(views) == body["checks"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=bogus", "status: expected open or resolved, got 'bogus'"),
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
