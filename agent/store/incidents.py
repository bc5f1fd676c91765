"""Incidents and their timelines. Only ``Store.apply`` writes them, inside its transaction."""

from __future__ import annotations

import json
from typing import Any

from agent import payload
from agent.store._repo import Repo


class IncidentsRepo(Repo):
    def create(self, incident_id: str, columns: dict[str, Any]) -> None:
        cols = dict(columns, id=incident_id)
        self.db.execute(
            f"INSERT INTO incidents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", list(cols.values())
        )

    def update(self, incident_id: str, columns: dict[str, Any], state: dict[str, Any] | None) -> None:
        update = dict(columns)
        if state is not None:
            update["state"] = json.dumps(state)
        if update:
            sets = ", ".join(f"{k} = ?" for k in update)
            self.db.execute(f"UPDATE incidents SET {sets} WHERE id = ?", [*update.values(), incident_id])

    def append_timeline(self, incident_id: str, at: float, entries: list[tuple[str, str]]) -> None:
        self.db.executemany(
            "INSERT INTO timeline (incident_id, at, kind, message) VALUES (?,?,?,?)",
            [(incident_id, at, kind, message) for kind, message in entries],
        )

    def take_sequence(self, incident_id: str) -> int:
        """The next event sequence number of the incident (1, 2, …)."""
        row = self.db.execute(
            "UPDATE incidents SET next_sequence = next_sequence + 1 WHERE id = ? RETURNING next_sequence - 1",
            (incident_id,),
        ).fetchone()
        if row is None:
            raise KeyError(incident_id)
        return int(row[0])

    def snapshot(self, incident_id: str) -> dict[str, Any]:
        """The incident as events and the API carry it; KeyError if there is none."""
        row = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise KeyError(incident_id)
        timeline = self.db.execute(
            "SELECT at, kind, message FROM timeline WHERE incident_id = ? ORDER BY id", (incident_id,)
        ).fetchall()
        return payload.incident_snapshot(dict(row), [dict(t) for t in timeline])

    def get(self, incident_id: str) -> dict[str, Any] | None:
        try:
            return self.snapshot(incident_id)
        except KeyError:
            return None

    def open_rows(self) -> list[dict[str, Any]]:
        """Open incidents with their raw rows (the engine restores its state from them)."""
        rows = self.db.execute("SELECT * FROM incidents WHERE status = 'open'").fetchall()
        return [dict(r) | {"state": json.loads(r["state"])} for r in rows]

    def list(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT * FROM incidents"
        args: list[Any] = []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [payload.incident_summary(dict(r)) for r in self.db.execute(sql, args).fetchall()]
