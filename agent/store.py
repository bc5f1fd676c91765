"""The agent's memory: incidents, timelines, evidence, heal attempts, results and the outbox.

One SQLite file in WAL mode under ``state_dir``. Every incident change and the events it causes
are written in ONE transaction (``apply``), before anything slow happens, so a crash between the
two is impossible. The schema grows by numbered migrations (``PRAGMA user_version``).

sqlite3 blocks, so the daemon calls every method through ``run()``, which executes it on the
store's single thread; that thread is also the only one that touches the connection, which
serializes writes without locks. Tests may call the methods directly.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent import payload

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        check_name TEXT NOT NULL,
        started_at REAL NOT NULL,
        ok INTEGER NOT NULL,
        latency REAL NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX results_by_check ON results (check_name, id);

    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        check_type TEXT NOT NULL,
        target TEXT NOT NULL,
        container TEXT,
        status TEXT NOT NULL,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        opened_at REAL NOT NULL,
        resolved_at REAL,
        resolve_reason TEXT,
        max_restarts INTEGER,
        next_sequence INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL DEFAULT '{}'
    );
    CREATE UNIQUE INDEX one_open_incident_per_check ON incidents (check_name) WHERE status = 'open';
    CREATE INDEX incidents_by_time ON incidents (opened_at);

    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL REFERENCES incidents (id),
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX timeline_by_incident ON timeline (incident_id, id);

    CREATE TABLE evidence (
        incident_id TEXT NOT NULL REFERENCES incidents (id),
        phase TEXT NOT NULL,
        collected_at REAL NOT NULL,
        bundle TEXT NOT NULL,
        PRIMARY KEY (incident_id, phase)
    );

    CREATE TABLE heal_attempts (
        id INTEGER PRIMARY KEY,
        container TEXT NOT NULL,
        at REAL NOT NULL,
        incident_id TEXT
    );
    CREATE INDEX heal_attempts_by_time ON heal_attempts (at);

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL,
        notifier TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        body BLOB,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL,
        UNIQUE (event_id, notifier)
    );
    CREATE INDEX outbox_queue ON outbox (notifier, status, incident_id, sequence);
    """,
]


# An event waits for every earlier pending event of its incident (per notifier): order per incident.
FIRST_IN_LINE = """NOT EXISTS (
    SELECT 1 FROM outbox AS p
    WHERE p.notifier = o.notifier AND p.incident_id = o.incident_id
      AND p.status = 'pending' AND p.sequence < o.sequence)"""


def new_id(prefix: str, now: float | None = None) -> str:
    """Time-ordered, unique: sorts by creation and never collides across restarts."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{ms:012x}{secrets.token_hex(6)}"


@dataclass(slots=True)
class Change:
    """One incident change: what to write, what to append, which events it causes."""

    incident_id: str
    at: float
    create: dict[str, Any] | None = None  # the new incident's columns
    update: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    timeline: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    events: list[tuple[str, str | None]] = field(default_factory=list)  # (event, reason)
    notifiers: Sequence[str] = ()
    heal_attempt: str | None = None  # container restarted


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    event_id: str
    notifier: str
    incident_id: str
    sequence: int
    event: str
    payload: dict[str, Any]
    body: bytes | None
    attempts: int
    created_at: float


class Store:
    def __init__(self, path: Path, agent_info: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.agent_info = agent_info or {"name": "lifeguard", "version": "0"}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifeguard-store")
        self._db: sqlite3.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        self._db = db
        self._migrate()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method on the store's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aclose(self) -> None:
        await self.run(self.close)
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    # -- results ---------------------------------------------------------------------------
    def add_results(self, rows: Iterable[tuple[str, float, bool, float, str]]) -> None:
        with self._tx():
            self.db.executemany(
                "INSERT INTO results (check_name, started_at, ok, latency, message) VALUES (?,?,?,?,?)",
                rows,
            )

    def recent_results(self, check: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT started_at, ok, latency, message FROM results WHERE check_name = ?"
            " ORDER BY id DESC LIMIT ?",
            (check, limit),
        ).fetchall()
        return [dict(r) | {"ok": bool(r["ok"])} for r in reversed(rows)]

    # -- incidents -------------------------------------------------------------------------
    def apply(self, change: Change) -> dict[str, Any]:
        """Write one incident change and enqueue its events, atomically. Returns the snapshot."""
        with self._tx():
            if change.create is not None:
                cols = dict(change.create, id=change.incident_id)
                self.db.execute(
                    f"INSERT INTO incidents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    list(cols.values()),
                )
            update = dict(change.update)
            if change.state is not None:
                update["state"] = json.dumps(change.state)
            if update:
                sets = ", ".join(f"{k} = ?" for k in update)
                self.db.execute(
                    f"UPDATE incidents SET {sets} WHERE id = ?", [*update.values(), change.incident_id]
                )
            self.db.executemany(
                "INSERT INTO timeline (incident_id, at, kind, message) VALUES (?,?,?,?)",
                [(change.incident_id, change.at, kind, msg) for kind, msg in change.timeline],
            )
            if change.heal_attempt is not None:
                self.db.execute(
                    "INSERT INTO heal_attempts (container, at, incident_id) VALUES (?,?,?)",
                    (change.heal_attempt, change.at, change.incident_id),
                )
            snapshot = self._snapshot(change.incident_id)
            for event, reason in change.events:
                self._enqueue(snapshot, event, reason, change.at, change.notifiers)
            return snapshot

    def _enqueue(
        self,
        snapshot: dict[str, Any],
        event: str,
        reason: str | None,
        at: float,
        notifiers: Sequence[str],
    ) -> None:
        seq = self.db.execute(
            "UPDATE incidents SET next_sequence = next_sequence + 1 WHERE id = ? RETURNING next_sequence - 1",
            (snapshot["id"],),
        ).fetchone()[0]
        event_id = new_id("evt", at)
        body = payload.build_event(
            event=event,
            event_id=event_id,
            sequence=seq,
            occurred_at=at,
            agent=self.agent_info,
            incident=snapshot,
            reason=reason,
        )
        encoded = json.dumps(body, separators=(",", ":"))
        self.db.executemany(
            "INSERT INTO outbox (event_id, notifier, incident_id, sequence, event, payload,"
            " next_attempt_at, created_at) VALUES (?,?,?,?,?,?,?,?)",
            [(event_id, n, snapshot["id"], seq, event, encoded, at, at) for n in notifiers],
        )

    def _snapshot(self, incident_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise KeyError(incident_id)
        timeline = self.db.execute(
            "SELECT at, kind, message FROM timeline WHERE incident_id = ? ORDER BY id", (incident_id,)
        ).fetchall()
        return payload.incident_snapshot(dict(row), [dict(t) for t in timeline])

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        try:
            return self._snapshot(incident_id)
        except KeyError:
            return None

    def open_incidents(self) -> list[dict[str, Any]]:
        """Open incidents with their raw rows (the engine restores its state from them)."""
        rows = self.db.execute("SELECT * FROM incidents WHERE status = 'open'").fetchall()
        return [dict(r) | {"state": json.loads(r["state"])} for r in rows]

    def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT * FROM incidents"
        args: list[Any] = []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [payload.incident_summary(dict(r)) for r in self.db.execute(sql, args).fetchall()]

    # -- evidence --------------------------------------------------------------------------
    def save_evidence(self, incident_id: str, phase: str, at: float, bundle: dict[str, Any]) -> None:
        with self._tx():
            self.db.execute(
                "INSERT OR REPLACE INTO evidence (incident_id, phase, collected_at, bundle) VALUES (?,?,?,?)",
                (incident_id, phase, at, json.dumps(bundle)),
            )

    def evidence(self, incident_id: str) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT phase, bundle FROM evidence WHERE incident_id = ?", (incident_id,)
        ).fetchall()
        found = {r["phase"]: json.loads(r["bundle"]) for r in rows}
        return {"opened": found.get("opened"), "resolved": found.get("resolved")}

    # -- heal budget -----------------------------------------------------------------------
    def heal_attempts(self, since: float) -> list[tuple[str, float]]:
        rows = self.db.execute(
            "SELECT container, at FROM heal_attempts WHERE at > ? ORDER BY at", (since,)
        ).fetchall()
        return [(r["container"], r["at"]) for r in rows]

    # -- outbox ----------------------------------------------------------------------------
    def due(self, notifier: str, now: float, limit: int = 50) -> list[OutboxItem]:
        """Pending events whose time has come and that are first in line for their incident."""
        rows = self.db.execute(
            f"""
            SELECT * FROM outbox AS o
            WHERE o.notifier = ? AND o.status = 'pending' AND o.next_attempt_at <= ?
              AND {FIRST_IN_LINE}
            ORDER BY o.next_attempt_at, o.id LIMIT ?
            """,
            (notifier, now, limit),
        ).fetchall()
        return [
            OutboxItem(
                id=r["id"],
                event_id=r["event_id"],
                notifier=r["notifier"],
                incident_id=r["incident_id"],
                sequence=r["sequence"],
                event=r["event"],
                payload=json.loads(r["payload"]),
                body=r["body"],
                attempts=r["attempts"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    def next_due_at(self, notifier: str) -> float | None:
        """When the first event that is first in line for its incident comes due."""
        row = self.db.execute(
            f"""
            SELECT MIN(o.next_attempt_at) FROM outbox AS o
            WHERE o.notifier = ? AND o.status = 'pending' AND {FIRST_IN_LINE}
            """,
            (notifier,),
        ).fetchone()
        return row[0]

    def freeze_body(self, item_id: int, body: bytes) -> None:
        """The first attempt's body is the body of every retry (same bytes, same signature input)."""
        with self._tx():
            self.db.execute("UPDATE outbox SET body = ? WHERE id = ? AND body IS NULL", (body, item_id))

    def mark_delivered(self, item: OutboxItem, at: float, detail: str) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?",
                (at, item.id),
            )
            self.db.execute(
                "INSERT INTO timeline (incident_id, at, kind, message) VALUES (?,?,?,?)",
                (item.incident_id, at, "notified", f"{item.event} delivered to {item.notifier} ({detail})"),
            )

    def mark_retry(self, item: OutboxItem, next_at: float, error: str) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (next_at, error, item.id),
            )

    def mark_dead(self, item: OutboxItem, error: str) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, item.id),
            )

    def retire_unknown_notifiers(self, known: Sequence[str]) -> int:
        """Events queued for a notifier no longer in the config can never be sent: mark them dead."""
        marks = ", ".join("?" * len(known))
        with self._tx():
            return self.db.execute(
                f"UPDATE outbox SET status = 'dead', last_error = 'notifier removed from the config'"
                f" WHERE status = 'pending' AND notifier NOT IN ({marks})",
                list(known),
            ).rowcount

    def outbox_stats(self, now: float) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        dead = self.db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'dead'").fetchone()[0]
        oldest = row[1]
        return {
            "pending": row[0],
            "dead": dead,
            "oldest_pending_age": None if oldest is None else max(0.0, now - oldest),
        }

    def outbox_rows(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, event_id, notifier, incident_id, sequence, event, status, attempts, last_error FROM outbox"
        args: tuple[Any, ...] = ()
        if incident_id:
            sql += " WHERE incident_id = ?"
            args = (incident_id,)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY id", args).fetchall()]

    # -- retention -------------------------------------------------------------------------
    def prune(
        self, now: float, *, results_per_check: int, delivered_events: float, resolved_evidence: float
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._tx():
            counts["results"] = self.db.execute(
                """
                DELETE FROM results WHERE id IN (
                  SELECT id FROM (
                    SELECT id, ROW_NUMBER() OVER (PARTITION BY check_name ORDER BY id DESC) AS n
                    FROM results) WHERE n > ?)
                """,
                (results_per_check,),
            ).rowcount
            counts["events"] = self.db.execute(
                "DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < ?",
                (now - delivered_events,),
            ).rowcount
            counts["evidence"] = self.db.execute(
                "DELETE FROM evidence WHERE incident_id IN"
                " (SELECT id FROM incidents WHERE status = 'resolved' AND resolved_at < ?)",
                (now - resolved_evidence,),
            ).rowcount
        return counts


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
