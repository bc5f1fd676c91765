"""Silences made through the API: what they match, from when until when, who made them and why."""

from __future__ import annotations

import json
from typing import Any

from agent.store._repo import Repo


class SilencesRepo(Repo):
    def add(
        self, silence_id: str, match: dict[str, list[str]], starts_at: float, ends_at: float,
        comment: str | None, created_by: str,
    ) -> dict[str, Any]:
        with self._store.transaction():
            self.db.execute(
                "INSERT INTO silences (id, match, starts_at, ends_at, comment, created_by) VALUES (?,?,?,?,?,?)",
                (silence_id, json.dumps(match), starts_at, ends_at, comment, created_by),
            )
        found = self.get(silence_id)
        assert found is not None
        return found

    def get(self, silence_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
        return None if row is None else _row(row)

    def ending_after(self, at: float) -> list[dict[str, Any]]:
        """Silences that end after ``at`` (active ones and those expired since), newest first."""
        rows = self.db.execute(
            "SELECT * FROM silences WHERE ends_at > ? ORDER BY starts_at DESC, id DESC", (at,)
        ).fetchall()
        return [_row(r) for r in rows]

    def end(self, silence_id: str, at: float) -> dict[str, Any] | None:
        """End a silence at ``at`` (one already over keeps its end); None if there is none."""
        with self._store.transaction():
            self.db.execute("UPDATE silences SET ends_at = MIN(ends_at, ?) WHERE id = ?", (at, silence_id))
        return self.get(silence_id)

    def prune(self, before: float) -> int:
        """Forget silences that ended before ``before`` (inside the caller's transaction)."""
        return self.db.execute("DELETE FROM silences WHERE ends_at < ?", (before,)).rowcount


def _row(row: Any) -> dict[str, Any]:
    found = dict(row)
    found["match"] = json.loads(found["match"])
    return found
