"""End to end: ``lifeguard run`` pages PagerDuty and Opsgenie, and closes both when it recovers."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_opsgenie import API_KEY, OpsgenieFake
from tests.fake_pagerduty import ROUTING_KEY, PagerDutyFake
from tests.fixtures_agent import Target, agent_config, wait_until


@pytest.fixture
async def services() -> AsyncIterator[tuple[PagerDutyFake, OpsgenieFake]]:
    pagerduty, opsgenie = PagerDutyFake(), OpsgenieFake()
    await pagerduty.start()
    await opsgenie.start()
    yield pagerduty, opsgenie
    await opsgenie.stop()
    await pagerduty.stop()


async def test_an_incident_triggers_and_resolves_pagerduty_and_opens_and_closes_opsgenie(
    target: Target, services: tuple[PagerDutyFake, OpsgenieFake], spawn_agent: object
) -> None:
    pagerduty, opsgenie = services
    cfg = agent_config(
        [{"name": "api", "type": "http", "url": target.url, "severity": "SEV-2"}],
        [
            {"name": "pager", "type": "pagerduty", "routing_key": "${PD_ROUTING_KEY}", "url": pagerduty.url,
             "timeout": "1s"},
            {"name": "genie", "type": "opsgenie", "api_key": "${OPSGENIE_API_KEY}", "url": opsgenie.url,
             "timeout": "1s", "responders": [{"type": "team", "name": "ops"}]},
        ],
    )
    agent = spawn_agent(cfg, {"PD_ROUTING_KEY": ROUTING_KEY, "OPSGENIE_API_KEY": API_KEY})  # type: ignore[operator]
    await agent.ready()
    await wait_until(lambda: target.hits >= 2, 10, "the target to be checked")

    target.status, target.body = 500, "database is down"
    await wait_until(lambda: pagerduty.accepted() and opsgenie.accepted(), 15, "both services to be paged")
    [trigger] = pagerduty.accepted()
    incident_id = trigger["dedup_key"]
    assert incident_id.startswith("inc_") and trigger["event_action"] == "trigger"
    assert trigger["payload"]["summary"] == "[SEV-2][OPENED] api failing: HTTP 500"
    assert (trigger["payload"]["severity"], trigger["payload"]["source"]) == ("error", "test-agent")
    [create] = opsgenie.accepted()
    assert create["path"] == "/v2/alerts" and create["body"]["alias"] == incident_id
    assert create["body"]["priority"] == "P2" and create["body"]["message"] == "[SEV-2][OPENED] api failing: HTTP 500"

    target.status, target.body = 200, "ok"
    await wait_until(lambda: pagerduty.alerts.get(incident_id, {}).get("status") == "resolved", 15,
                     "the PagerDuty alert to be resolved")
    await wait_until(lambda: opsgenie.alerts.get(incident_id, {}).get("status") == "closed", 15,
                     "the Opsgenie alert to be closed")
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.accepted()] == [
        ("trigger", incident_id), ("resolve", incident_id)]
    assert [r["path"] for r in opsgenie.accepted()] == ["/v2/alerts", f"/v2/alerts/{incident_id}/close"]
    assert opsgenie.accepted()[-1]["query"] == {"identifierType": "alias"}
    assert all(r["answered"] == 202 for r in pagerduty.requests + opsgenie.requests)

    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    delivered = [e for e in agent.log_events() if e.get("event") == "delivery.delivered"]
    assert {e.get("notifier") for e in delivered} == {"pager", "genie"}
    stored = _everything_stored(agent.workdir / "state" / "lifeguard.db")  # type: ignore[attr-defined]
    assert "[SEV-2][OPENED] api failing" in stored  # the frozen bodies are in there, and read
    everything = agent.log_text() + stored
    assert ROUTING_KEY not in everything and API_KEY not in everything


def _everything_stored(db: Path) -> str:
    """Every value of every table of the agent's database, as text."""
    with sqlite3.connect(db) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = [row for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')]  # noqa: S608
    return "\n".join(
        " ".join(v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in row) for row in rows)
