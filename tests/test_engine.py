"""The engine applying decisions against a real SQLite store and a real evidence collector."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.store import Change, Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.tcp import TcpCheckConfig


@pytest.fixture
def store(running_store: Store) -> Store:
    return running_store


def engine_for(store: Store, tmp_path: Path, clock, **check) -> Engine:
    cfg = TcpCheckConfig(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=2,
                         notify=["ops"], **check)
    return Engine(store, [build_check(cfg, CheckContext())], heal_enabled=True, healer=None,
                  evidence=EvidenceCollector(None, tmp_path), notify_all=["ops"], clock=clock)


async def test_results_open_and_resolve_one_incident_with_ordered_events(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    await engine.restore()
    for ok in (False, False, True, True):
        now["t"] += 1
        await engine.on_result(CheckResult("db", ok, now["t"], 0.001, "ok" if ok else "connection refused"))
    incident_id = (await store.run(store.list_incidents, None, 10))[0]["id"]
    await engine.evidence_ready(incident_id, "opened")
    await engine.evidence_ready(incident_id, "resolved")
    await engine.drain(5)
    rows = await store.run(store.outbox_rows)
    assert [(r["event"], r["sequence"]) for r in rows] == [("incident.opened", 1), ("incident.resolved", 2)]
    evidence = await store.run(store.evidence, incident_id)
    assert [c["ok"] for c in evidence["opened"]["checks"]] == [False]
    assert [c["ok"] for c in evidence["resolved"]["checks"]] == [False, False, True, True]
    assert len(await store.run(store.recent_results, "db", 100)) == 4  # flushed by drain
    incident = await store.run(store.incident, incident_id)
    assert incident["title"] == "db failing: connection refused" and incident["status"] == "resolved"


async def test_restore_continues_an_open_incident_and_collects_missing_evidence(store, tmp_path) -> None:
    await store.run(store.apply, Change(
        incident_id="inc_00000000000aaa", at=500.0, notifiers=["ops"],
        create={"check_name": "db", "check_type": "tcp", "target": "127.0.0.1:9", "container": None,
                "status": "open", "severity": "high", "title": "db failing", "opened_at": 500.0,
                "max_restarts": None},
        state={"passing_streak": 0}, timeline=[("opened", "refused")], events=[("incident.opened", None)],
    ))
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    await engine.restore()
    assert engine.tracked["db"].state.incident_id == "inc_00000000000aaa"
    await engine.evidence_ready("inc_00000000000aaa", "opened")
    assert (await store.run(store.evidence, "inc_00000000000aaa"))["opened"]["phase"] == "opened"
    await engine.on_result(CheckResult("db", False, 1001.0, 0.001, "connection refused"))
    assert len(await store.run(store.list_incidents, None, 10)) == 1  # the same incident goes on


async def test_removed_check_is_resolved_at_restore(store, tmp_path) -> None:
    await store.run(store.apply, Change(
        incident_id="inc_00000000000bbb", at=500.0,
        create={"check_name": "gone", "check_type": "tcp", "target": "x", "container": None,
                "status": "open", "severity": "low", "title": "gone failing", "opened_at": 500.0,
                "max_restarts": None},
    ))
    engine = engine_for(store, tmp_path, lambda: 900.0)
    await engine.restore()
    incident = await store.run(store.incident, "inc_00000000000bbb")
    assert incident["status"] == "resolved" and incident["resolve_reason"] == "check_removed"
    assert [r["event"] for r in await store.run(store.outbox_rows)] == ["incident.resolved"]
