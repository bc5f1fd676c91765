"""The SQLite store: migrations, atomic incident changes, the outbox queue, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.store import Change, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "lifeguard.db", agent_info={"name": "t", "version": "0.1.0"})
    s.open()
    yield s
    s.close()


def open_incident(store: Store, incident_id: str = "inc_000000000001aa", check: str = "api", at: float = 100.0,
                  notifiers: tuple[str, ...] = ("ops",)) -> dict:
    return store.apply(Change(
        incident_id=incident_id, at=at, notifiers=notifiers,
        create={"check_name": check, "check_type": "http", "target": "http://x", "container": None,
                "status": "open", "severity": "high", "title": f"{check} failing: HTTP 500",
                "opened_at": at, "max_restarts": 3},
        state={"restarts": 0, "last_heal": None},
        timeline=[("opened", "HTTP 500")],
        events=[("incident.opened", None)],
    ))


def test_file_is_wal_and_migrations_are_idempotent(store: Store, tmp_path: Path) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    store.open()  # second open: no migration runs twice
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_apply_writes_incident_timeline_and_one_event_per_notifier(store: Store) -> None:
    snap = open_incident(store, notifiers=("ops", "chat"))
    assert snap["status"] == "open" and snap["sev"] == "SEV-2"
    assert [t["kind"] for t in snap["timeline"]] == ["opened"]
    rows = store.outbox_rows()
    assert [(r["notifier"], r["sequence"], r["event"]) for r in rows] == [
        ("ops", 1, "incident.opened"), ("chat", 1, "incident.opened")]
    assert rows[0]["event_id"] == rows[1]["event_id"]


def test_sequence_increases_per_incident(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=101, notifiers=("ops",),
                       timeline=[("heal_attempted", "restarting")], events=[("incident.heal_attempted", None)]))
    open_incident(store, "inc_000000000002bb", check="db")
    seqs = [(r["incident_id"][-2:], r["sequence"]) for r in store.outbox_rows()]
    assert seqs == [("aa", 1), ("aa", 2), ("bb", 1)]
    payload = store.due("ops", 1000)[0].payload
    assert payload["incident"]["timeline"][0]["kind"] == "opened"


def test_a_failed_change_leaves_nothing_behind(store: Store) -> None:
    open_incident(store)
    with pytest.raises(sqlite3.IntegrityError):  # a second open incident for the same check
        open_incident(store, "inc_000000000009zz")
    assert len(store.outbox_rows()) == 1
    assert store.incident("inc_000000000009zz") is None


def test_due_gives_only_the_first_pending_event_of_each_incident(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=101, notifiers=("ops",),
                       events=[("incident.resolved", None)], update={"status": "resolved", "resolved_at": 101}))
    open_incident(store, "inc_000000000002bb", check="db")
    due = store.due("ops", 1000)
    assert [(d.incident_id[-2:], d.sequence) for d in due] == [("aa", 1), ("bb", 1)]
    store.mark_retry(due[0], next_at=500, error="HTTP 503")
    assert [(d.incident_id[-2:], d.sequence) for d in store.due("ops", 400)] == [("bb", 1)]
    assert store.next_due_at("ops") == 100  # bb's head; aa's second event waits behind its head
    store.mark_dead(due[0], "HTTP 410")
    assert [(d.incident_id[-2:], d.sequence) for d in store.due("ops", 400)] == [("bb", 1), ("aa", 2)]


def test_delivered_appends_notified_and_body_freezes_once(store: Store) -> None:
    open_incident(store)
    item = store.due("ops", 1000)[0]
    store.freeze_body(item.id, b"first")
    store.freeze_body(item.id, b"second")
    assert store.due("ops", 1000)[0].body == b"first"
    store.mark_delivered(item, 120, "HTTP 200")
    assert store.due("ops", 1000) == []
    kinds = [t["kind"] for t in store.incident(item.incident_id)["timeline"]]
    assert kinds == ["opened", "notified"]
    assert store.outbox_stats(130)["pending"] == 0


def test_heal_attempts_persist_for_the_budget(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=150, heal_attempt="api"))
    assert store.heal_attempts(since=100) == [("api", 150)]
    assert store.heal_attempts(since=150) == []


def test_open_incidents_restore_their_state(store: Store) -> None:
    open_incident(store)
    rows = store.open_incidents()
    assert rows[0]["id"] == "inc_000000000001aa" and rows[0]["state"] == {"restarts": 0, "last_heal": None}


def test_retention(store: Store) -> None:
    store.add_results([("api", float(i), True, 0.01, "ok") for i in range(30)])
    store.add_results([("db", 1.0, False, 0.01, "refused")])
    open_incident(store)
    item = store.due("ops", 1000)[0]
    store.mark_delivered(item, 200, "HTTP 200")
    store.apply(Change(incident_id=item.incident_id, at=300, update={"status": "resolved", "resolved_at": 300}))
    store.save_evidence(item.incident_id, "opened", 100, {"phase": "opened"})
    counts = store.prune(10_000, results_per_check=10, delivered_events=1000, resolved_evidence=5000)
    assert counts == {"results": 20, "events": 1, "evidence": 1}
    assert [r["started_at"] for r in store.recent_results("api", 100)] == [float(i) for i in range(20, 30)]
    assert len(store.recent_results("db")) == 1


def test_events_for_a_removed_notifier_are_retired(store: Store) -> None:
    open_incident(store, notifiers=("ops", "old"))
    assert store.retire_unknown_notifiers(["ops"]) == 1
    rows = {r["notifier"]: r for r in store.outbox_rows()}
    assert rows["old"]["status"] == "dead" and rows["old"]["last_error"] == "notifier removed from the config"
    assert rows["ops"]["status"] == "pending"
    assert store.outbox_stats(200)["pending"] == 1
