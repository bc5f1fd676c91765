"""Incidents and their timelines. Only ``Store.apply`` writes them, inside its transaction."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent import payload
from agent.store._repo import Repo

_Snapshots = list[dict[str, Any]]  # the class's own ``list`` method hides the builtin inside it

if TYPE_CHECKING:  # pragma: no cover
    from agent.policies import IncidentClock


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

    def append_timeline(
        self, incident_id: str, at: float, entries: list[tuple[str, str]], author: str | None = None
    ) -> None:
        self.db.executemany(
            "INSERT INTO timeline (incident_id, at, kind, message, author) VALUES (?,?,?,?,?)",
            [(incident_id, at, kind, message, author) for kind, message in entries],
        )

    def add_comment(self, incident_id: str, at: float, author: str, text: str, internal: bool) -> None:
        self.db.execute(
            "INSERT INTO comments (incident_id, at, author, text, internal) VALUES (?,?,?,?,?)",
            (incident_id, at, author, text, int(internal)),
        )

    def add_update(self, incident_id: str, at: float, author: str, phase: str, message: str) -> None:
        self.db.execute(
            "INSERT INTO updates (incident_id, at, author, phase, message) VALUES (?,?,?,?,?)",
            (incident_id, at, author, phase, message),
        )

    def row(self, incident_id: str) -> dict[str, Any] | None:
        """The incident's raw row (the engine checks a command against it), or None."""
        found = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return None if found is None else dict(found)

    def take_sequence(self, incident_id: str) -> int:
        """The next event sequence number of the incident (1, 2, …)."""
        row = self.db.execute(
            "UPDATE incidents SET next_sequence = next_sequence + 1 WHERE id = ? RETURNING next_sequence - 1",
            (incident_id,),
        ).fetchone()
        if row is None:
            raise KeyError(incident_id)
        return int(row[0])

    def snapshot(self, incident_id: str, *, internal: bool = False) -> dict[str, Any]:
        """The incident as events and the API carry it; KeyError if there is none.

        Internal comments only with ``internal`` (the API): events never carry them, so their
        text reaches no notifier but through its own ``incident.commented`` event.
        """
        row = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise KeyError(incident_id)
        timeline = self.db.execute(
            "SELECT at, kind, message, author FROM timeline WHERE incident_id = ? ORDER BY id", (incident_id,)
        ).fetchall()
        comments = self.db.execute(
            "SELECT at, author, text, internal FROM comments WHERE incident_id = ?"
            + ("" if internal else " AND internal = 0")
            + " ORDER BY id",
            (incident_id,),
        ).fetchall()
        updates = self.db.execute(
            "SELECT at, author, phase, message FROM updates WHERE incident_id = ? ORDER BY id", (incident_id,)
        ).fetchall()
        return payload.incident_snapshot(
            dict(row),
            [dict(t) for t in timeline],
            [dict(c) for c in comments],
            [dict(u) for u in updates],
            self.impact(incident_id),
        )

    def impact(self, incident_id: str) -> list[dict[str, Any]]:
        """The incidents of other checks this one held back (their ``cause_id``), oldest first."""
        rows = self.db.execute(
            "SELECT check_name AS 'check', id AS incident_id FROM incidents WHERE cause_id = ? ORDER BY opened_at, id",
            (incident_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def get(self, incident_id: str) -> dict[str, Any] | None:
        """The incident as the API shows it, internal comments included, with its postmortem
        (``{required, path}``); None if there is none."""
        try:
            found = self.snapshot(incident_id, internal=True)
        except KeyError:
            return None
        row = self.db.execute(
            "SELECT severity, opened_at, resolved_at, postmortem_required, postmortem_path FROM incidents WHERE id = ?",
            (incident_id,),
        ).fetchone()
        required = row["postmortem_required"]
        if required is None:  # unresolved (or resolved before postmortems were recorded): the rule as it stands
            end = row["resolved_at"] if row["resolved_at"] is not None else time.time()
            required = self._store.postmortem_rule(row["severity"], row["opened_at"], end)
        found["postmortem"] = {"required": bool(required), "path": row["postmortem_path"]}
        return found

    def postmortems_missing(self) -> list[str]:
        """Resolved incidents that required a postmortem whose draft is not recorded, oldest first."""
        rows = self.db.execute(
            "SELECT id FROM incidents WHERE postmortem_required = 1 AND postmortem_path IS NULL"
            " AND status = 'resolved' ORDER BY resolved_at"
        ).fetchall()
        return [r[0] for r in rows]

    def open_rows(self) -> list[dict[str, Any]]:
        """Unresolved check incidents with their raw rows (the engine restores its state from them)."""
        rows = self.db.execute("SELECT * FROM incidents WHERE status != 'resolved' AND manual = 0").fetchall()
        return [dict(r) | {"state": json.loads(r["state"])} for r in rows]

    def manual_open(self) -> dict[str, str]:
        """Unresolved incidents opened by hand: id -> severity."""
        rows = self.db.execute("SELECT id, severity FROM incidents WHERE status != 'resolved' AND manual = 1")
        return {r["id"]: r["severity"] for r in rows}

    def list(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first; ``open`` means unresolved (open or acknowledged)."""
        sql = "SELECT * FROM incidents"
        args: list[Any] = []
        if status == "open":
            sql += " WHERE status != 'resolved'"
        elif status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [payload.incident_summary(dict(r)) for r in self.db.execute(sql, args).fetchall()]

    def clocks(self) -> Sequence[IncidentClock]:
        """The stored times of every unresolved incident that its policy's timers run on."""
        from agent.policies import clocks_from_rows

        rows = [
            dict(r)
            for r in self.db.execute(
                "SELECT id, severity, opened_at, acknowledged_at FROM incidents WHERE status != 'resolved'"
            ).fetchall()
        ]
        if not rows:
            return []
        timeline = self.db.execute(
            "SELECT t.incident_id, t.kind, t.message, t.at FROM timeline t JOIN incidents i ON i.id = t.incident_id"
            " WHERE i.status != 'resolved' AND t.kind IN ('escalated', 'ack_overdue', 'reminder')"
        ).fetchall()
        updates = self.db.execute(
            "SELECT u.incident_id, MAX(u.at) FROM updates u JOIN incidents i ON i.id = u.incident_id"
            " WHERE i.status != 'resolved' GROUP BY u.incident_id"
        ).fetchall()
        return clocks_from_rows(rows, [dict(t) for t in timeline], {u[0]: u[1] for u in updates})

    def for_status_page(self, resolved_since: float, resolved_limit: int) -> tuple[_Snapshots, _Snapshots]:
        """(unresolved, recently resolved) incidents as snapshots without internal comments, newest first."""
        unresolved = self.db.execute(
            "SELECT id FROM incidents WHERE status != 'resolved' ORDER BY opened_at DESC, id DESC"
        ).fetchall()
        resolved = self.db.execute(
            "SELECT id FROM incidents WHERE status = 'resolved' AND resolved_at >= ?"
            " ORDER BY resolved_at DESC, id DESC LIMIT ?",
            (resolved_since, resolved_limit),
        ).fetchall()
        return [self.snapshot(r[0]) for r in unresolved], [self.snapshot(r[0]) for r in resolved]
