"""What the paging channels' tests share: one incident's events of every kind, the fake services."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from agent.events import Event, Notification
from tests.fake_opsgenie import OpsgenieFake
from tests.fake_pagerduty import PagerDutyFake

INCIDENT_ID = "inc_019ab5d2c7e8a1b2c3d4e5f6"
OPENED_AT = 1763953962.123  # 2025-11-24T03:12:42.123Z
EVIDENCE_URL = f"https://lifeguard.example.net/web-01/api/incidents/{INCIDENT_ID}/evidence"
KINDS = (
    "incident.opened",
    "incident.heal_attempted",
    "incident.heal_succeeded",
    "incident.heal_failed",
    "incident.escalated",
    "incident.resolved",
    "notifier.test",
)
BUNDLE = {
    "phase": "opened",
    "checks": [{"at": "2025-11-24T03:12:42.123Z", "ok": False, "message": "HTTP 500"}],
    "container": {
        "state": {"status": "exited", "exit_code": 137, "oom_killed": True},
        "logs": ["booting", "listening on :8080", "GET /health 500", "out of memory", "killed"],
    },
}


def notification(kind: str, *, public: bool = True, logs: list[str] | None = None, **incident: Any) -> Notification:
    """The event ``kind`` of one incident (the ``api`` check, SEV-1), ``incident`` overriding its snapshot."""
    evidence = copy.deepcopy(BUNDLE)
    if logs is not None:
        evidence["container"]["logs"] = logs  # type: ignore[index]
    step = KINDS.index(kind) if kind in KINDS else len(KINDS)
    at = OPENED_AT + 30 * step
    resolved = kind == "incident.resolved"
    heal_result = {"incident.heal_attempted": "attempted", "incident.heal_failed": "failed",
                   "incident.escalated": "exhausted"}.get(kind, "succeeded")
    snapshot: dict[str, Any] = {
        "id": INCIDENT_ID, "check": "api", "check_type": "http",
        "status": "resolved" if resolved else "open", "severity": "critical", "sev": "SEV-1",
        "title": "api failing: HTTP 500", "opened_at": "2025-11-24T03:12:42.123Z",
        "resolved_at": "2025-11-24T03:15:42.123Z" if resolved else None,
        "target": "http://127.0.0.1:8080/health", "container": "api",
        "heal": {"restarts": 1 if step else 0, "max_restarts": 3, "last_result": heal_result if step else None},
        "timeline": [{"at": "2025-11-24T03:12:42.123Z", "kind": "opened", "message": "HTTP 500"}],
    } | incident
    event = Event(
        id=f"evt_{step:024d}", kind=kind, incident_id=str(snapshot["id"]), sequence=step + 1, occurred_at=at,
        agent={"name": "web-01", "version": "0.1.0"}, incident=snapshot,
        reason="heal_exhausted" if kind == "incident.escalated" else None,
    )
    return Notification(event=event, evidence=evidence, evidence_url=EVIDENCE_URL, evidence_public=public)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyFake]:
    fake = PagerDutyFake()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def opsgenie() -> AsyncIterator[OpsgenieFake]:
    fake = OpsgenieFake()
    await fake.start()
    yield fake
    await fake.stop()
