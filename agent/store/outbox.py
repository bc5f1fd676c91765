"""The delivery queue: one row per (event, notifier), with its attempts and its next try.

An event waits for every earlier pending event of its incident (per notifier), so events of one
incident reach each notifier in order, while other incidents' events pass it by.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from agent.events import Event
from agent.store._repo import Repo
from agent.store.events import event_from_row

FIRST_IN_LINE = """NOT EXISTS (
    SELECT 1 FROM outbox AS p
    WHERE p.notifier = o.notifier AND p.incident_id = o.incident_id
      AND p.status = 'pending' AND p.sequence < o.sequence)"""
NOT_EXCLUDED = "o.id NOT IN (SELECT value FROM json_each(?))"
_LISTED = (
    "SELECT o.id, o.event_id, e.kind AS event, o.incident_id, o.notifier, o.status, o.attempts,"
    " o.last_error, o.next_attempt_at, o.delivered_at FROM outbox AS o JOIN events AS e ON e.id = o.event_id"
)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One pending delivery of one event to one notifier."""

    id: int
    notifier: str
    event: Event
    body: bytes | None  # what the first attempt sent; None before it
    attempts: int
    created_at: float

    @property
    def event_id(self) -> str:
        return self.event.id

    @property
    def incident_id(self) -> str:
        return self.event.incident_id

    @property
    def sequence(self) -> int:
        return self.event.sequence


class OutboxRepo(Repo):
    def enqueue(self, event_id: str, incident_id: str, sequence: int, notifiers: Sequence[str], at: float) -> None:
        self.db.executemany(
            "INSERT INTO outbox (event_id, notifier, incident_id, sequence, next_attempt_at, created_at)"
            " VALUES (?,?,?,?,?,?)",
            [(event_id, n, incident_id, sequence, at, at) for n in notifiers],
        )

    def due(self, notifier: str, now: float, exclude: Collection[int] = (), limit: int = 50) -> list[OutboxItem]:
        """Pending deliveries whose time has come and that are first in line for their incident.

        ``exclude``: deliveries the caller already has in hand (under way, or held back in memory)."""
        rows = self.db.execute(
            f"""
            SELECT o.id AS delivery_id, o.notifier, o.body, o.attempts, o.created_at, e.*
            FROM outbox AS o JOIN events AS e ON e.id = o.event_id
            WHERE o.notifier = ? AND o.status = 'pending' AND o.next_attempt_at <= ? AND {FIRST_IN_LINE}
              AND {NOT_EXCLUDED}
            ORDER BY o.next_attempt_at, o.id LIMIT ?
            """,
            (notifier, now, json.dumps(list(exclude)), limit),
        ).fetchall()
        return [
            OutboxItem(
                id=r["delivery_id"],
                notifier=r["notifier"],
                event=event_from_row(r),
                body=r["body"],
                attempts=r["attempts"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    def next_due_at(self, notifier: str, exclude: Collection[int] = ()) -> float | None:
        """When the first delivery that is first in line for its incident (and not excluded) comes due."""
        row = self.db.execute(
            f"SELECT MIN(o.next_attempt_at) FROM outbox AS o"
            f" WHERE o.notifier = ? AND o.status = 'pending' AND {FIRST_IN_LINE} AND {NOT_EXCLUDED}",
            (notifier, json.dumps(list(exclude))),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def freeze_body(self, item_id: int, body: bytes) -> bytes:
        """Keep the first attempt's body for every retry; returns the body that is kept."""
        with self._store.transaction():
            self.db.execute("UPDATE outbox SET body = ? WHERE id = ? AND body IS NULL", (body, item_id))
            kept: bytes = self.db.execute("SELECT body FROM outbox WHERE id = ?", (item_id,)).fetchone()[0]
        return kept

    def mark_delivered(self, item: OutboxItem, at: float, detail: str) -> None:
        with self._store.transaction():
            self.db.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?",
                (at, item.id),
            )
            self._store.incidents.append_timeline(
                item.incident_id, at, [("notified", f"{item.event.kind} delivered to {item.notifier} ({detail})")]
            )

    def mark_retry(self, item: OutboxItem, next_at: float, error: str) -> None:
        with self._store.transaction():
            self.db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (next_at, error, item.id),
            )

    def mark_dead(self, item: OutboxItem, error: str) -> None:
        with self._store.transaction():
            self.db.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, item.id),
            )

    def retire_unknown_notifiers(self, known: Sequence[str]) -> int:
        """Deliveries queued for a notifier no longer in the config can never happen: mark them dead."""
        marks = ", ".join("?" * len(known))
        with self._store.transaction():
            return self.db.execute(
                f"UPDATE outbox SET status = 'dead', last_error = 'notifier removed from the config'"
                f" WHERE status = 'pending' AND notifier NOT IN ({marks})",
                list(known),
            ).rowcount

    def stats(self, now: float) -> dict[str, Any]:
        """Pending (in all and per notifier) and dead deliveries, and the oldest pending one's age."""
        by_notifier = self.db.execute(
            "SELECT notifier, COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending' GROUP BY notifier"
        ).fetchall()
        dead = self.db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'dead'").fetchone()[0]
        oldest = min((r[2] for r in by_notifier), default=None)
        age = None if oldest is None else max(0.0, now - oldest)
        return {
            "pending": sum(r[1] for r in by_notifier),
            "pending_by_notifier": {r[0]: r[1] for r in by_notifier},
            "dead": dead,
            "oldest_pending_age": age,
        }

    def rows(self, incident_id: str | None = None, notifier: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT o.id, o.event_id, o.notifier, o.incident_id, o.sequence, e.kind AS event, o.status, o.attempts,"
            " o.last_error FROM outbox AS o JOIN events AS e ON e.id = o.event_id"
        )
        where, args = [], []
        if incident_id:
            where.append("o.incident_id = ?")
            args.append(incident_id)
        if notifier:
            where.append("o.notifier = ?")
            args.append(notifier)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY o.id", args).fetchall()]

    def list(self, status: str | None = None, notifier: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Deliveries, newest first, as the deliveries API shows them (times as epoch seconds)."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("o.status", status), ("o.notifier", notifier)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = _LISTED
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY o.id DESC LIMIT ?", (*args, limit)).fetchall()]

    def get(self, item_id: int) -> dict[str, Any] | None:
        """One delivery as ``list`` shows it, or None."""
        row = self.db.execute(f"{_LISTED} WHERE o.id = ?", (item_id,)).fetchone()
        return None if row is None else dict(row)

    def revive(self, item_id: int, at: float) -> bool:
        """Put a dead delivery back in the queue, due at ``at``, its attempts kept; False if it is not dead."""
        with self._store.transaction():
            return self.db.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ? WHERE id = ? AND status = 'dead'",
                (at, item_id),
            ).rowcount == 1

    def prune_delivered(self, before: float) -> int:
        return self.db.execute(
            "DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < ?", (before,)
        ).rowcount
