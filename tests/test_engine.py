"""The engine applying decisions against a real SQLite store and a real evidence collector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actions.healers import HEALERS, Healer, HealOutcome
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
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=2,
                         notify=["ops"], **check))
    return Engine(store, [build_check(cfg, CheckContext())], heal_enabled=True,
                  evidence=EvidenceCollector(None, tmp_path), notify_all=["ops"], clock=clock)


async def test_results_open_and_resolve_one_incident_with_ordered_events(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    await engine.restore()
    for ok in (False, False, True, True):
        now["t"] += 1
        await engine.on_result(CheckResult("db", ok, now["t"], 0.001, "ok" if ok else "connection refused"))
    incident_id = (await store.run(store.incidents.list, None, 10))[0]["id"]
    await engine.evidence_ready(incident_id, "opened")
    await engine.evidence_ready(incident_id, "resolved")
    await engine.drain(5)
    rows = await store.run(store.outbox.rows)
    assert [(r["event"], r["sequence"]) for r in rows] == [("incident.opened", 1), ("incident.resolved", 2)]
    evidence = await store.run(store.evidence.get, incident_id)
    assert [c["ok"] for c in evidence["opened"]["checks"]] == [False]
    assert [c["ok"] for c in evidence["resolved"]["checks"]] == [False, False, True, True]
    assert len(await store.run(store.results.recent, "db", 100)) == 4  # flushed by drain
    incident = await store.run(store.incidents.get, incident_id)
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
    assert (await store.run(store.evidence.get, "inc_00000000000aaa"))["opened"]["phase"] == "opened"
    await engine.on_result(CheckResult("db", False, 1001.0, 0.001, "connection refused"))
    assert len(await store.run(store.incidents.list, None, 10)) == 1  # the same incident goes on


async def test_removed_check_is_resolved_at_restore(store, tmp_path) -> None:
    await store.run(store.apply, Change(
        incident_id="inc_00000000000bbb", at=500.0,
        create={"check_name": "gone", "check_type": "tcp", "target": "x", "container": None,
                "status": "open", "severity": "low", "title": "gone failing", "opened_at": 500.0,
                "max_restarts": None},
    ))
    engine = engine_for(store, tmp_path, lambda: 900.0)
    await engine.restore()
    incident = await store.run(store.incidents.get, "inc_00000000000bbb")
    assert incident["status"] == "resolved" and incident["resolve_reason"] == "check_removed"
    assert [r["event"] for r in await store.run(store.outbox.rows)] == ["incident.resolved"]


async def test_a_failed_write_changes_nothing_and_the_next_result_opens_the_incident(tmp_path) -> None:
    """Another process holds the database: the opening write fails, nothing is half-remembered."""
    import sqlite3

    store = Store(tmp_path / "lifeguard.db", busy_timeout=0.2)
    await store.run(store.open)
    try:
        engine = engine_for(store, tmp_path, lambda: 1000.0)
        await engine.restore()
        other = sqlite3.connect(tmp_path / "lifeguard.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        await engine.on_result(CheckResult("db", False, 1000.0, 0.001, "connection refused"))
        assert engine.tracked["db"].state.incident_id is None
        assert engine.check_views()[0].incident_id is None
        assert engine.problems() and engine.problems()[0].startswith("incident writes failing: OperationalError")
        other.execute("ROLLBACK")
        other.close()

        await engine.on_result(CheckResult("db", False, 1001.0, 0.001, "connection refused"))
        [incident] = await store.run(store.incidents.list, None, 10)
        assert engine.tracked["db"].state.incident_id == incident["id"] == engine.check_views()[0].incident_id
        assert [r["event"] for r in await store.run(store.outbox.rows)] == ["incident.opened"]
        assert engine.problems() == []
        await engine.drain(5)
    finally:
        await store.aclose()


async def test_results_the_database_refused_are_kept_and_written_by_the_next_flush(tmp_path) -> None:
    import sqlite3

    store = Store(tmp_path / "lifeguard.db", busy_timeout=0.1)
    await store.run(store.open)
    try:
        engine = engine_for(store, tmp_path, lambda: 1000.0)
        for t in range(3):
            await engine.on_result(CheckResult("db", True, 1000.0 + t, 0.001, "connected"))
        other = sqlite3.connect(tmp_path / "lifeguard.db", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        await engine.flush_results()
        assert engine.problems() and engine.problems()[0].startswith("results not saved:")
        other.execute("ROLLBACK")
        other.close()
        await engine.on_result(CheckResult("db", True, 1003.0, 0.001, "connected"))
        await engine.flush_results()
        rows = await store.run(store.results.recent, "db", 10)
        assert [r["started_at"] for r in rows] == [1000.0, 1001.0, 1002.0, 1003.0]
        assert engine.problems() == []
    finally:
        await store.aclose()


# -- heal paths: a heal kind registered by the test, a real SQLite file, an injected clock ----------


class SwitchHealer(Healer):
    """A heal kind of the test's own: 'flips' a target, succeeding or failing as told."""

    kind = "flip_switch"
    verb, verb_ing, noun = "flip", "flipping", "switch"
    calls: list[str] = []
    fail_with: str | None = None

    async def heal(self) -> HealOutcome:
        SwitchHealer.calls.append(self.target)
        if SwitchHealer.fail_with:
            return HealOutcome(False, SwitchHealer.fail_with)
        return HealOutcome(True, f"flipped {self.target}")


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> type[SwitchHealer]:
    monkeypatch.setitem(HEALERS, SwitchHealer.kind, SwitchHealer)
    monkeypatch.setattr(SwitchHealer, "calls", [])
    monkeypatch.setattr(SwitchHealer, "fail_with", None)
    return SwitchHealer


def healing_engine(store: Store, tmp_path: Path, clock, **heal) -> Engine:
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=1,
                         notify=["ops"], heal={"flip_switch": "main", "max_restarts": 2, "within": "15m",
                                               "cooldown": "10s", **heal}))
    return Engine(store, [build_check(cfg, CheckContext())], clients=CheckContext(),
                  evidence=EvidenceCollector(None, tmp_path), notify_all=["ops"], clock=clock)


async def feed(engine: Engine, now: dict, ok: bool, at: float) -> None:
    now["t"] = at
    await engine.on_result(CheckResult("db", ok, at, 0.001, "ok" if ok else "connection refused"))
    await engine.drain(5)  # the heal and the evidence it spawned


async def timeline(store: Store) -> list[tuple[str, str]]:
    """The newest incident's timeline, without delivery entries."""
    [summary] = await store.run(store.incidents.list, None, 1)
    incident = await store.run(store.incidents.get, summary["id"])
    return [(t["kind"], t["message"]) for t in incident["timeline"] if t["kind"] != "notified"]


async def test_a_heal_is_made_once_written_and_succeeds_with_the_next_pass(store, tmp_path, switch) -> None:
    now = {"t": 1000.0}
    engine = healing_engine(store, tmp_path, lambda: now["t"])
    await engine.restore()
    await feed(engine, now, False, 1000.0)
    assert switch.calls == ["main"]
    assert await store.run(store.heals.since, 0) == [(("flip_switch", "main"), 1000.0)]
    await feed(engine, now, True, 1001.0)
    assert await timeline(store) == [
        ("opened", "connection refused"), ("heal_attempted", "flipping switch 'main'"),
        ("heal_succeeded", "check passed again after the restart"), ("resolved", "recovered: 1 passing results in a row")]
    events = [r["event"] for r in await store.run(store.outbox.rows)]
    assert events == ["incident.opened", "incident.heal_attempted", "incident.heal_succeeded", "incident.resolved"]
    incident = (await store.run(store.incidents.list, None, 1))[0]
    snapshot = await store.run(store.incidents.get, incident["id"])
    assert snapshot["heal"] == {"restarts": 1, "max_restarts": 2, "last_result": "succeeded"}


async def test_a_failed_heal_is_judged_at_once_then_the_budget_runs_out(store, tmp_path, switch) -> None:
    switch.fail_with = "switch stuck"
    now = {"t": 1000.0}
    engine = healing_engine(store, tmp_path, lambda: now["t"])
    await engine.restore()
    await feed(engine, now, False, 1000.0)
    await feed(engine, now, False, 1005.0)  # within the cooldown: no heal
    await feed(engine, now, False, 1010.0)  # cooldown over: the second and last attempt
    await feed(engine, now, False, 1020.0)  # budget spent: escalate once
    await feed(engine, now, False, 1030.0)
    assert switch.calls == ["main", "main"]
    assert [k for k, _ in await timeline(store)] == [
        "opened", "heal_attempted", "heal_failed", "heal_attempted", "heal_failed", "heal_exhausted"]
    assert (await timeline(store))[2] == ("heal_failed", "flip of 'main' failed: switch stuck")
    assert (await timeline(store))[-1][1] == "flip budget spent for switch 'main': 2 of 2 attempts used within 15m"
    rows = await store.run(store.outbox.rows)
    assert [r["event"] for r in rows][-1] == "incident.escalated"


async def test_the_budget_survives_a_restart_of_the_engine(store, tmp_path, switch) -> None:
    now = {"t": 1000.0}
    first = healing_engine(store, tmp_path, lambda: now["t"], max_restarts=1)
    await first.restore()
    await feed(first, now, False, 1000.0)
    await feed(first, now, True, 1001.0)  # healed and resolved: one attempt spent
    second = healing_engine(store, tmp_path, lambda: now["t"], max_restarts=1)
    await second.restore()
    await feed(second, now, False, 1002.0)
    assert switch.calls == ["main"]  # the second incident finds the budget spent
    assert [k for k, _ in await timeline(store)] == ["opened", "heal_exhausted"]


async def test_heal_off_is_a_dry_run_that_spends_nothing(store, tmp_path, switch) -> None:
    now = {"t": 1000.0}
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=1,
                         notify=["ops"], heal={"flip_switch": "main"}))
    engine = Engine(store, [build_check(cfg, CheckContext())], clients=CheckContext(), heal_enabled=False,
                    evidence=EvidenceCollector(None, tmp_path), clock=lambda: now["t"])
    await engine.restore()
    await feed(engine, now, False, 1000.0)
    await feed(engine, now, False, 1100.0)
    assert switch.calls == [] and await store.run(store.heals.since, 0) == []
    assert await timeline(store) == [("opened", "connection refused"),
                                     ("heal_attempted", "dry run: would flip switch 'main' (heal is off)")]


# -- the commands of the people running an incident ---------------------------------------------

async def failing_incident(engine: Engine, store: Store, now: dict[str, float]) -> str:
    await engine.restore()
    now["t"] += 1
    await engine.on_result(CheckResult("db", False, now["t"], 0.001, "connection refused"))
    incident_id = engine.tracked["db"].state.incident_id
    assert incident_id is not None
    await engine.evidence_ready(incident_id, "opened")
    return incident_id


async def events_of(store: Store, incident_id: str) -> list[tuple[str, int]]:
    return [(e.kind, e.sequence) for e in await store.run(store.events.of_incident, incident_id)]


async def test_acknowledge_records_who_and_when_and_a_second_one_changes_nothing(store, tmp_path) -> None:
    from agent.engine import IncidentConflict

    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    incident_id = await failing_incident(engine, store, now)
    now["t"] = 1010.0
    acked = await engine.acknowledge(incident_id, "ann@host")
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "ann@host"
    assert acked["acknowledged_at"] == "1970-01-01T00:16:50.000Z"
    assert acked["timeline"][-1] | {"at": None} == {
        "at": None, "kind": "acknowledged", "message": "acknowledged by ann@host", "author": "ann@host"}
    with pytest.raises(IncidentConflict):
        await engine.acknowledge(incident_id, "bob")
    assert await events_of(store, incident_id) == [("incident.opened", 1), ("incident.acknowledged", 2)]
    assert (await store.run(store.incidents.get, incident_id))["acknowledged_by"] == "ann@host"


async def test_an_acknowledged_check_incident_still_resolves_by_recovery(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    incident_id = await failing_incident(engine, store, now)
    await engine.acknowledge(incident_id, "ann")
    for _ in range(2):
        now["t"] += 1
        await engine.on_result(CheckResult("db", True, now["t"], 0.001, "ok"))
    incident = await store.run(store.incidents.get, incident_id)
    assert incident["status"] == "resolved" and incident["resolve_reason"] == "recovered"
    await engine.drain(5)


async def test_resolve_by_hand_resets_the_check_so_its_next_failure_opens_a_new_incident(store, tmp_path) -> None:
    from agent.engine import IncidentConflict

    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    incident_id = await failing_incident(engine, store, now)
    resolved = await engine.resolve(incident_id, "ann", root_cause="disk full", follow_ups=["alert on disk"])
    assert resolved["status"] == "resolved" and resolved["phase"] == "resolved"
    assert (resolved["resolved_by"], resolved["root_cause"], resolved["follow_ups"]) == (
        "ann", "disk full", ["alert on disk"])
    assert engine.tracked["db"].state.incident_id is None
    event = (await store.run(store.events.of_incident, incident_id))[-1]
    assert event.kind == "incident.resolved"
    assert event.fields == {"resolved_by": "ann", "root_cause": "disk full", "follow_ups": ["alert on disk"]}
    with pytest.raises(IncidentConflict):
        await engine.resolve(incident_id, "bob")
    with pytest.raises(IncidentConflict):
        await engine.acknowledge(incident_id, "bob")
    assert len(await events_of(store, incident_id)) == 2  # the refusals sent nothing
    now["t"] += 1
    await engine.on_result(CheckResult("db", False, now["t"], 0.001, "connection refused"))
    second = engine.tracked["db"].state.incident_id
    assert second is not None and second != incident_id
    await engine.drain(5)


async def test_comments_internal_ones_go_only_to_internal_notifiers(store, tmp_path) -> None:
    from agent.routing import NotifierFilter

    now = {"t": 1000.0}
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=2,
                         notify=["ops", "team"]))
    engine = Engine(store, [build_check(cfg, CheckContext())], evidence=EvidenceCollector(None, tmp_path),
                    notify_all=["ops", "team"], clock=lambda: now["t"],
                    notifier_filters={"team": NotifierFilter.of(None, None, internal=True)})
    incident_id = await failing_incident(engine, store, now)
    await engine.comment(incident_id, "ann", "customer told", internal=False)
    after = await engine.comment(incident_id, "ann", "password was in the log", internal=True)
    assert [c["internal"] for c in after["comments"]] == [False, True]  # the API's view has both
    rows = [(r["notifier"], r["event"]) for r in await store.run(store.outbox.rows) if r["event"].endswith("commented")]
    assert rows == [("ops", "incident.commented"), ("team", "incident.commented"), ("team", "incident.commented")]
    for event in await store.run(store.events.of_incident, incident_id):
        assert "password" not in json.dumps(event.incident)
    assert "password" not in json.dumps(after["timeline"])


async def test_status_update_sets_the_phase_and_refuses_resolved_and_unknown(store, tmp_path) -> None:
    from agent.engine import IncidentConflict

    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    incident_id = await failing_incident(engine, store, now)
    updated = await engine.post_update(incident_id, "identified", "bad deploy; rolling back", "ann")
    assert updated["phase"] == "identified"
    assert [(u["phase"], u["message"]) for u in updated["updates"]] == [("identified", "bad deploy; rolling back")]
    event = (await store.run(store.events.of_incident, incident_id))[-1]
    assert event.kind == "incident.updated" and event.fields["changes"] == ["update", "phase"]
    with pytest.raises(ValueError):
        await engine.post_update(incident_id, "fixed", "x", "ann")
    with pytest.raises(IncidentConflict):
        await engine.post_update(incident_id, "resolved", "x", "ann")
    assert len(await events_of(store, incident_id)) == 2


async def test_unknown_incident(store, tmp_path) -> None:
    from agent.engine import UnknownIncident

    engine = engine_for(store, tmp_path, lambda: 1000.0)
    with pytest.raises(UnknownIncident):
        await engine.acknowledge("inc_000000000000ffff", "ann")


async def test_manual_incident_is_never_resolved_by_a_check_and_patches_and_resolves_by_hand(store, tmp_path) -> None:
    from agent.engine import IncidentConflict, IncidentPatch

    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    await engine.restore()
    opened = await engine.open_manual("Payments vendor down", "high", "ann", description="card payments fail",
                                      affected_services=["checkout"], tags=["vendor"], assignee="bob")
    incident_id = opened["id"]
    assert opened["manual"] and opened["check_type"] == "manual" and opened["affected_services"] == ["checkout"]
    await engine_for(store, tmp_path, lambda: now["t"]).restore()  # a restart takes it for no removed check
    for ok in (True, True, True):
        now["t"] += 1
        await engine.on_result(CheckResult("db", ok, now["t"], 0.001, "ok"))
    assert (await store.run(store.incidents.get, incident_id))["status"] == "open"
    patched = await engine.patch(incident_id, IncidentPatch(severity="critical", assignee="bob"), "ann")
    assert patched["severity"] == "critical" and patched["sev"] == "SEV-1"
    event = (await store.run(store.events.of_incident, incident_id))[-1]
    assert event.fields == {"changes": ["severity"]}  # the assignee was already bob
    await engine.patch(incident_id, IncidentPatch(assignee="bob"), "ann")  # nothing differs: no event
    await engine.resolve(incident_id, "ann")
    with pytest.raises(IncidentConflict):
        await engine.patch(incident_id, IncidentPatch(severity="low"), "ann")
    later = await engine.patch(incident_id, IncidentPatch(root_cause="vendor outage", follow_ups=["second PSP"]), "ann")
    assert later["root_cause"] == "vendor outage" and later["severity"] == "critical"
    assert [k for k, _ in await events_of(store, incident_id)] == [
        "incident.opened", "incident.updated", "incident.resolved", "incident.updated"]
    assert (await store.run(store.incidents.get, incident_id))["resolve_reason"] == "by_hand"


def test_history_keeps_the_last_results_compactly_in_order() -> None:
    from agent.history import History

    history = History(20)
    assert len(history) == 0 and history.last is None and list(history) == []
    said = []
    for i in range(25):
        message = "HTTP 200" if i % 5 else f"HTTP 5{i:02d}"
        said.append("".join(message))  # an equal string, not the same object
        history.append(CheckResult("web", i % 5 != 0, 1000.0 + i, i / 1000, said[-1],
                                   {"response": "x" * 1000}, warning=i == 24))
    kept = list(history)
    assert len(history) == 20 and [r.started_at for r in kept] == [1005.0 + i for i in range(20)]
    assert [r.ok for r in kept] == [i % 5 != 0 for i in range(5, 25)]
    assert [r.message for r in kept] == said[5:] and [r.latency for r in kept] == [i / 1000 for i in range(5, 25)]
    assert all(r.details == {} and r.check == "web" for r in kept) and [r.warning for r in kept][-2:] == [False, True]
    assert history.last == kept[-1] and history.last.details == {}
    assert kept[-2].message is kept[-3].message  # a repeated message is kept once
