"""Events as data: each stored once, with the incident as it was, whatever the channels."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.events import Event
from agent.store._repo import Repo
from agent.store.changes import new_id


class EventsRepo(Repo):
    def append(
        self,
        *,
        kind: str,
        incident: dict[str, Any],
        sequence: int,
        at: float,
        agent: dict[str, str],
        reason: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Event:
        event = Event(
            id=new_id("evt", at),
            kind=kind,
            incident_id=incident["id"],
            sequence=sequence,
            occurred_at=at,
            agent=dict(agent),
            incident=incident,
            reason=reason,
            fields=dict(fields or {}),
        )
        self.db.execute(
            "INSERT INTO events (id, incident_id, sequence, kind, occurred_at, reason, agent, incident, fields)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (
                event.id,
                event.incident_id,
                event.sequence,
                event.kind,
                event.occurred_at,
                event.reason,
                json.dumps(event.agent),
                json.dumps(event.incident),
                json.dumps(event.fields),
            ),
        )
        return event

    def get(self, event_id: str) -> Event | None:
        row = self.db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else event_from_row(row)

    def of_incident(self, incident_id: str) -> list[Event]:
        rows = self.db.execute("SELECT * FROM events WHERE incident_id = ? ORDER BY sequence", (incident_id,))
        return [event_from_row(r) for r in rows.fetchall()]

    def prune_undeliverable(self, before: float) -> int:
        """Events older than ``before`` that no delivery refers to any more."""
        return self.db.execute(
            "DELETE FROM events WHERE occurred_at < ? AND NOT EXISTS (SELECT 1 FROM outbox WHERE event_id = events.id)",
            (before,),
        ).rowcount


def event_from_row(row: sqlite3.Row) -> Event:
    return Event(
        id=row["id"],
        kind=row["kind"],
        incident_id=row["incident_id"],
        sequence=row["sequence"],
        occurred_at=row["occurred_at"],
        agent=json.loads(row["agent"]),
        incident=json.loads(row["incident"]),
        reason=row["reason"],
        fields=json.loads(row["fields"]),
    )
