"""The SQLite store: migrations, atomic incident changes, the outbox queue, retention."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from agent.store import Change, Store, StoreUnusable, migrations


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
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(migrations()) == 8


def test_apply_writes_incident_timeline_and_one_event_per_notifier(store: Store) -> None:
    snap = open_incident(store, notifiers=("ops", "chat"))
    assert snap["status"] == "open" and snap["sev"] == "SEV-2"
    assert [t["kind"] for t in snap["timeline"]] == ["opened"]
    rows = store.outbox.rows()
    assert [(r["notifier"], r["sequence"], r["event"]) for r in rows] == [
        ("ops", 1, "incident.opened"), ("chat", 1, "incident.opened")]
    assert rows[0]["event_id"] == rows[1]["event_id"]


def test_sequence_increases_per_incident(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=101, notifiers=("ops",),
                       timeline=[("heal_attempted", "restarting")], events=[("incident.heal_attempted", None)]))
    open_incident(store, "inc_000000000002bb", check="db")
    seqs = [(r["incident_id"][-2:], r["sequence"]) for r in store.outbox.rows()]
    assert seqs == [("aa", 1), ("aa", 2), ("bb", 1)]
    event = store.outbox.due("ops", 1000)[0].event
    assert event.incident["timeline"][0]["kind"] == "opened" and event.kind == "incident.opened"


def test_a_failed_change_leaves_nothing_behind(store: Store) -> None:
    open_incident(store)
    with pytest.raises(sqlite3.IntegrityError):  # a second open incident for the same check
        open_incident(store, "inc_000000000009zz")
    assert len(store.outbox.rows()) == 1
    assert store.incidents.get("inc_000000000009zz") is None


def test_an_acknowledged_incident_still_holds_its_checks_one_unresolved_place(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=101, update={"status": "acknowledged"}))
    with pytest.raises(sqlite3.IntegrityError):
        open_incident(store, "inc_000000000009zz")
    assert [i["id"] for i in store.incidents.list("open", 10)] == ["inc_000000000001aa"]
    assert [r["id"] for r in store.incidents.open_rows()] == ["inc_000000000001aa"]


def test_manual_incidents_share_no_check_and_are_not_restored_as_checks(store: Store) -> None:
    for n in (1, 2):
        store.apply(Change(incident_id=f"inc_00000000000{n}mm", at=100 + n, create={
            "check_name": "", "check_type": "manual", "target": "", "container": None, "status": "open",
            "severity": "low", "title": "vendor down", "opened_at": 100 + n, "manual": 1}))
    assert len(store.incidents.list("open", 10)) == 2 and store.incidents.open_rows() == []


def test_internal_comments_are_in_the_api_view_but_never_in_the_snapshot_events_carry(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=101, comment=("ann", "db creds rotated", True),
                       events=[("incident.commented", None)], notifiers=("ops",)))
    event = store.events.of_incident("inc_000000000001aa")[-1]
    assert event.incident["comments"] == []
    assert [c["text"] for c in store.incidents.get("inc_000000000001aa")["comments"]] == ["db creds rotated"]


def test_due_gives_only_the_first_pending_event_of_each_incident(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=101, notifiers=("ops",),
                       events=[("incident.resolved", None)], update={"status": "resolved", "resolved_at": 101}))
    open_incident(store, "inc_000000000002bb", check="db")
    due = store.outbox.due("ops", 1000)
    assert [(d.incident_id[-2:], d.sequence) for d in due] == [("aa", 1), ("bb", 1)]
    store.outbox.mark_retry(due[0], next_at=500, error="HTTP 503")
    assert [(d.incident_id[-2:], d.sequence) for d in store.outbox.due("ops", 400)] == [("bb", 1)]
    assert store.outbox.next_due_at("ops") == 100  # bb's head; aa's second event waits behind its head
    store.outbox.mark_dead(due[0], "HTTP 410")
    assert [(d.incident_id[-2:], d.sequence) for d in store.outbox.due("ops", 400)] == [("bb", 1), ("aa", 2)]


def test_delivered_appends_notified_and_body_freezes_once(store: Store) -> None:
    open_incident(store)
    item = store.outbox.due("ops", 1000)[0]
    store.outbox.freeze_body(item.id, b"first")
    store.outbox.freeze_body(item.id, b"second")
    assert store.outbox.due("ops", 1000)[0].body == b"first"
    store.outbox.mark_delivered(item, 120, "HTTP 200")
    assert store.outbox.due("ops", 1000) == []
    kinds = [t["kind"] for t in store.incidents.get(item.incident_id)["timeline"]]
    assert kinds == ["opened", "notified"]
    assert store.outbox.stats(130)["pending"] == 0


def test_heal_attempts_persist_for_the_budget(store: Store) -> None:
    open_incident(store)
    store.apply(Change(incident_id="inc_000000000001aa", at=150, heal_attempt=("restart_container", "api")))
    assert store.heals.since(since=100) == [(("restart_container", "api"), 150)]
    assert store.heals.since(since=150) == []


def test_open_incidents_restore_their_state(store: Store) -> None:
    open_incident(store)
    rows = store.incidents.open_rows()
    assert rows[0]["id"] == "inc_000000000001aa" and rows[0]["state"] == {"restarts": 0, "last_heal": None}


def test_retention(store: Store) -> None:
    store.results.add([("api", float(i), True, 0.01, "ok") for i in range(30)])
    store.results.add([("db", 1.0, False, 0.01, "refused")])
    open_incident(store)
    item = store.outbox.due("ops", 1000)[0]
    store.outbox.mark_delivered(item, 200, "HTTP 200")
    store.apply(Change(incident_id=item.incident_id, at=300, update={"status": "resolved", "resolved_at": 300}))
    store.evidence.save(item.incident_id, "opened", 100, {"phase": "opened"})
    counts = store.prune(10_000, results_per_check=10, delivered_events=1000, resolved_evidence=5000)
    assert counts == {"results": 20, "events": 1, "evidence": 1}
    assert [r["started_at"] for r in store.results.recent("api", 100)] == [float(i) for i in range(20, 30)]
    assert len(store.results.recent("db")) == 1


def test_events_for_a_removed_notifier_are_retired(store: Store) -> None:
    open_incident(store, notifiers=("ops", "old"))
    assert store.outbox.retire_unknown_notifiers(["ops"]) == 1
    rows = {r["notifier"]: r for r in store.outbox.rows()}
    assert rows["old"]["status"] == "dead" and rows["old"]["last_error"] == "notifier removed from the config"
    assert rows["ops"]["status"] == "pending"
    assert store.outbox.stats(200)["pending"] == 1


def test_an_event_is_stored_once_as_data_whatever_the_number_of_notifiers(store: Store) -> None:
    open_incident(store, notifiers=("ops", "chat", "audit"))
    [event] = store.events.of_incident("inc_000000000001aa")
    assert (event.kind, event.sequence, event.occurred_at, event.reason) == ("incident.opened", 1, 100.0, None)
    assert event.agent == {"name": "t", "version": "0.1.0"} and event.incident["status"] == "open"
    assert [item.event for item in store.outbox.due("ops", 1000) + store.outbox.due("chat", 1000)] == [event, event]
    assert store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1


def test_a_version_1_database_migrates_keeping_its_budget_and_queue(tmp_path: Path) -> None:
    """A file written by 0.1.0 (schema 1) opens with its heal budget and pending events intact."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    number, _, script = migrations()[0]
    db.executescript(f"{script}\nPRAGMA user_version = {number};")
    db.execute("INSERT INTO incidents (id, check_name, check_type, target, status, severity, title, opened_at, state)"
               " VALUES ('inc_000000000001aa', 'api', 'http', 'http://x', 'open', 'high', 'api failing', 100.0, '{}')")
    db.executemany("INSERT INTO heal_attempts (container, at, incident_id) VALUES (?, ?, 'inc_000000000001aa')",
                   [("api", 100.0), ("api", 160.0)])
    old_payload = ('{"schema":"lifeguard.incident/v1","event_id":"evt_1","event":"incident.opened","sequence":1,'
                   '"occurred_at":"2026-11-24T03:12:42.123Z","agent":{"name":"web-01","version":"0.1.0"},'
                   '"reason":null,"incident":{"id":"inc_000000000001aa","status":"open"}}')
    db.execute("INSERT INTO outbox (event_id, notifier, incident_id, sequence, event, payload, next_attempt_at,"
               " created_at) VALUES ('evt_1', 'ops', 'inc_000000000001aa', 1, 'incident.opened', ?, 100, 100)",
               (old_payload,))
    db.commit()
    db.close()

    store = Store(path)
    store.open()
    try:
        assert store.schema_version() == len(migrations())
        assert store.heals.since(0) == [(("restart_container", "api"), 100.0), (("restart_container", "api"), 160.0)]
        [item] = store.outbox.due("ops", 1000)
        assert (item.event.id, item.event.kind, item.event.sequence, item.event.reason) == (
            "evt_1", "incident.opened", 1, None)
        from agent.payload import iso
        assert iso(item.event.occurred_at) == "2026-11-24T03:12:42.123Z"
        assert item.event.agent == {"name": "web-01", "version": "0.1.0"}
        assert item.event.incident == {"id": "inc_000000000001aa", "status": "open"}
    finally:
        store.close()


def test_migrations_are_numbered_files_without_gaps() -> None:
    assert [(n, name.split("_", 1)[0]) for n, name, _ in migrations()] == [(1, "0001"), (2, "0002"), (3, "0003"), (4, "0004"), (5, "0005"), (6, "0006"), (7, "0007"), (8, "0008")]


# -- security at rest and unusable files ----------------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the usual umask: what the agent gets unless it sets modes itself
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_is_created_0700_and_the_database_files_0600(tmp_path: Path, umask_022) -> None:
    s = Store(tmp_path / "deep" / "state" / "lifeguard.db")
    s.open()
    try:
        s.db.execute("CREATE TABLE t (x)")  # a write: the -wal and -shm exist now
        folder = tmp_path / "deep" / "state"
        assert mode(folder) == 0o700
        files = {p.name: mode(p) for p in folder.iterdir()}
        assert files == {"lifeguard.db": 0o600, "lifeguard.db-wal": 0o600, "lifeguard.db-shm": 0o600}
    finally:
        s.close()


def test_a_database_readable_by_others_is_made_private_at_open(tmp_path: Path, umask_022) -> None:
    s = Store(tmp_path / "lifeguard.db")
    s.open()
    s.close()
    (tmp_path / "lifeguard.db").chmod(0o644)
    s.open()
    s.close()
    assert mode(tmp_path / "lifeguard.db") == 0o600


def test_a_state_dir_that_is_a_file_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(StoreUnusable) as exc:
        Store(tmp_path / "state" / "lifeguard.db").open()
    assert str(exc.value) == (
        f"{tmp_path / 'state'}: exists and is not a directory; point agent.state_dir at a directory or remove the file"
    )
    with pytest.raises(StoreUnusable) as exc:
        Store(tmp_path / "state" / "below" / "lifeguard.db").open()
    assert str(exc.value).startswith(f"{tmp_path / 'state' / 'below'}: a part of this path is a file, not a directory")


def test_random_bytes_are_reported_corrupt_and_left_in_place(tmp_path: Path) -> None:
    db = tmp_path / "lifeguard.db"
    db.write_bytes(b"\x07" * 4096)
    with pytest.raises(StoreUnusable) as exc:
        Store(db).open()
    assert exc.value.corrupt and exc.value.path == db
    assert str(exc.value).startswith(f"{db}: not a usable SQLite database (file is not a database); ")
    assert db.read_bytes() == b"\x07" * 4096


def test_move_aside_renames_the_database_and_its_wal_together(tmp_path: Path) -> None:
    s = Store(tmp_path / "lifeguard.db")
    s.open()
    s.db.execute("CREATE TABLE t (x)")
    (tmp_path / "lifeguard.db-wal").write_bytes(b"wal")  # as a crash leaves it
    aside = s.move_aside(now=1767225600.0)  # 2026-01-01 00:00:00 UTC
    s.close()
    assert aside == tmp_path / "lifeguard.db.corrupt-20260101T000000Z"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "lifeguard.db" not in names
    assert "lifeguard.db.corrupt-20260101T000000Z" in names and "lifeguard.db.corrupt-20260101T000000Z-wal" in names
