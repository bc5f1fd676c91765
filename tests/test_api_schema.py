"""The API under schemathesis, driven by its own OpenAPI document (``agent/schemas/openapi.json``).

The real aiohttp app, served as the daemon serves it (``ApiRunner``, a bearer token) on 127.0.0.1 in
a thread of its own, gets valid and invalid requests for every documented operation, a bounded
number of each so the run takes seconds. Every answer must be as documented (status, content type,
body schema); none may be a 5xx; every error must be ``{"error": {"code": …, "message": …}}``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from agent.api import OPENAPI, ApiRunner, CheckView, OutboxFigures, RetryAnswer, create_app
from agent.engine import IncidentConflict, IncidentPatch, UnknownIncident, UnknownSilence
from agent.maintenance import Match
from agent.metrics import CheckFacts, CheckTally, Exposition, Snapshot
from checks.base import CheckResult
from tests.fixtures_agent import free_port

TOKEN = "t0ken-for-the-schema-test"
T0 = 1_795_000_000.0
INC = "inc_0123456789abcdef"

schema = schemathesis.openapi.from_path(OPENAPI)
# Unknown query parameters are ignored, as HTTP APIs conventionally do (a scraper or a proxy may add its
# own): they are not invalid input the API must refuse.
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=25, deterministic=True, database="none",
    allow_extra_parameters=False,
)


class Facts:
    def uptime(self) -> float:
        return 12.3

    def checks_running(self) -> int:
        return 0

    def problems(self) -> list[str]:
        return []

    def outbox(self) -> OutboxFigures:
        return OutboxFigures(pending=1, dead=0, oldest_pending_at=T0 - 2)


class Board:
    def check_views(self) -> list[CheckView]:
        return [
            CheckView("web", "http", "http://127.0.0.1/health", CheckResult("web", False, T0, 0.0123, "HTTP 500"), INC),
            CheckView("new", "tcp", "127.0.0.1:1", None, None),
        ]


class Reader:
    incident_doc: dict[str, Any] = {
        "id": INC, "check": "web", "check_type": "http", "status": "open", "severity": "high", "sev": "SEV-2",
        "title": "web failing: HTTP 500", "opened_at": "2026-11-18T11:06:40.000Z", "resolved_at": None,
        "target": "http://127.0.0.1/health", "container": None, "resolve_reason": None, "heal": None,
        "timeline": [{"at": "2026-11-18T11:06:40.000Z", "kind": "opened", "message": "HTTP 500"}],
    }

    async def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        summary = {k: v for k, v in self.incident_doc.items() if k not in ("target", "container", "resolve_reason",
                                                                            "heal", "timeline")}
        return [summary][:limit] if status in (None, "open") else []

    async def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.incident_doc if incident_id == INC else None

    async def evidence(self, incident_id: str) -> dict[str, Any]:
        return {"opened": {"phase": "opened"}, "resolved": None}


class Desk:
    """Delivery 1 is dead (a retry queues it), 2 delivered (a retry conflicts), any other unknown."""

    def row(self, delivery_id: int) -> dict[str, Any]:
        dead = delivery_id == 1
        return {
            "id": delivery_id, "event_id": "evt_0195f0c2a1b2c3d4e5f6", "event": "incident.opened", "incident_id": INC,
            "notifier": "ops", "status": "dead" if dead else "delivered", "attempts": 3,
            "last_error": "HTTP 400: invalid_payload" if dead else None, "next_attempt_at": T0,
            "delivered_at": None if dead else T0,
        }

    async def list_deliveries(self, status: str | None, notifier: str | None, limit: int) -> list[dict[str, Any]]:
        rows = [self.row(2), self.row(1)]
        return [r for r in rows if status in (None, r["status"]) and notifier in (None, r["notifier"])][:limit]

    async def retry_delivery(self, delivery_id: int) -> RetryAnswer:
        if delivery_id == 1:
            return RetryAnswer(dict(self.row(1), status="pending"))
        if delivery_id == 2:
            return RetryAnswer(self.row(2), "delivery 2 is delivered, not dead")
        return RetryAnswer(None)


class IncidentDeskStub:
    """INC is open (every command succeeds); inc_…000 is resolved (ack and resolve conflict); any other unknown."""

    RESOLVED = "inc_000000000000"

    def _known(self, incident_id: str) -> dict[str, Any]:
        if incident_id == INC:
            return Reader.incident_doc
        if incident_id == self.RESOLVED:
            raise IncidentConflict(f"incident {incident_id} is resolved")
        raise UnknownIncident(incident_id)

    async def acknowledge(self, incident_id: str, by: str) -> dict[str, Any]:
        return self._known(incident_id)

    async def comment(self, incident_id: str, author: str, text: str, internal: bool = False) -> dict[str, Any]:
        return self._known(incident_id)

    async def post_update(self, incident_id: str, phase: str, message: str, author: str) -> dict[str, Any]:
        return self._known(incident_id)

    async def open_manual(self, title: str, severity: str, by: str, **fields: Any) -> dict[str, Any]:
        return Reader.incident_doc

    async def patch(self, incident_id: str, changes: IncidentPatch, by: str) -> dict[str, Any]:
        return self._known(incident_id)

    async def resolve(self, incident_id: str, by: str, **fields: Any) -> dict[str, Any]:
        return self._known(incident_id)


class SilenceDeskStub:
    """SIL is known (listed, removable); any other silence id is unknown."""

    SIL = "sil_0123456789abcdef"

    def doc(self, match: Match | None = None, status: str = "active") -> dict[str, Any]:
        return {
            "id": self.SIL, "match": (match or Match(check=("web",))).view(), "starts_at": "2026-11-18T11:06:40.000Z",
            "ends_at": "2026-11-18T13:06:40.000Z", "comment": None, "created_by": "api", "status": status,
        }

    async def add_silence(self, match: Match, ends_at: float, comment: str | None, created_by: str) -> dict[str, Any]:
        return self.doc(match)

    async def silences(self) -> list[dict[str, Any]]:
        return [self.doc()]

    async def remove_silence(self, silence_id: str) -> dict[str, Any]:
        if silence_id != self.SIL:
            raise UnknownSilence(silence_id)
        return self.doc(status="expired")


class Reloads:
    """A reload that applies: one check added."""

    def config_loaded_at(self) -> float:
        return T0

    def last_reload(self) -> dict[str, Any] | None:
        return None

    async def reload(self) -> dict[str, Any]:
        return {
            "ok": True, "at": "2026-11-18T11:06:40.000Z", "source": "api", "errors": [], "restart_needed": [],
            "checks": {"added": ["new"], "changed": [], "removed": []},
            "notifiers": {"added": [], "changed": [], "removed": []},
        }


class Status:
    """The status page's document: an open incident with a public update, one service."""

    async def status_document(self) -> dict[str, Any] | None:
        from agent.status_page import CheckState, build_status

        incident = dict(Reader.incident_doc, phase="identified", manual=False, affected_services=[], updates=[
            {"at": "2026-11-18T11:06:40.000Z", "author": "ann", "phase": "identified", "message": "Rolling back"}])
        from agent.maintenance import Cron, Window

        windows = [Window("db-upgrade", start=T0 + 3600, end=T0 + 7200),
                   Window("nightly", cron=Cron.parse("0 3 * * *"), duration=1800)]
        return build_status(title="Acme status", now=T0, checks=[CheckState("web", "Shop", False)],
                            days=[("web", int(T0 // 86400), 3, 4)], open_incidents=[incident], resolved=[],
                            windows=windows)


class Reports:
    """The report of one resolved critical incident, computed by the real function."""

    async def incident_report(self, since: float, until: float) -> dict[str, Any]:
        from agent.config.policies import PoliciesConfig
        from agent.config.report import DEFAULT_TARGETS
        from agent.reports import incident_report

        row = {"id": INC, "check_name": "web", "severity": "critical", "manual": 0, "opened_at": until - 600,
               "acknowledged_at": until - 500, "resolved_at": until - 60, "failing_since": until - 630,
               "postmortem_required": 1, "postmortem_path": None}
        timeline = [{"incident_id": INC, "at": until - 599, "kind": "heal_attempted", "message": "restarting"}]
        return incident_report([row], timeline, since=since, until=until, policies=PoliciesConfig(),
                               postmortem_after=14400.0, targets=DEFAULT_TARGETS)


def snapshot() -> Snapshot:
    tally = CheckTally()
    tally.ran("web", False, 0.0123)
    tally.late(0.002)
    return Snapshot(
        version="0.1.0", checks=[CheckFacts("web", "http", False), CheckFacts("new", "tcp", None)],
        runs=tally.runs, durations=tally.durations, lag=tally.lag, incidents_open={"high": 1},
        incidents_opened={"high": 1}, heals={}, heal_budget={}, deliveries={("ops", "dead"): 1},
        pending={"ops": 1}, reloads={},
    )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    port = free_port()

    async def start() -> ApiRunner:
        app = create_app(
            agent_name="web-01", token=TOKEN, health=Facts(), board=Board(), incidents=Reader(), deliveries=Desk(),
            reloads=Reloads(), desk=IncidentDeskStub(), silences=SilenceDeskStub(), status=Status(), reports=Reports(),
            metrics=Exposition(snapshot).write,
        )
        runner = ApiRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        from aiohttp import web

        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, name="api-under-test", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def every_error_in_the_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """A custom check: any 4xx/5xx answer is JSON ``{"error": {"code": str, "message": str}}`` (and a
    ``field`` naming what a refused write body got wrong)."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) in ({"code", "message"}, {"code", "message", "field"}), body
    assert all(isinstance(v, str) and v for v in body["error"].values()), body
    return True


@schema.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented_and_never_5xx(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        additional_checks=[every_error_in_the_error_shape],
        timeout=5,
    )
