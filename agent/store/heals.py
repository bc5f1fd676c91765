"""Heal attempts: the memory behind the heal budget, so an agent restart does not refill it."""

from __future__ import annotations

from agent.store._repo import Repo


class HealsRepo(Repo):
    def record(self, kind: str, target: str, at: float, incident_id: str | None) -> None:
        self.db.execute(
            "INSERT INTO heal_attempts (kind, target, at, incident_id) VALUES (?,?,?,?)",
            (kind, target, at, incident_id),
        )

    def since(self, since: float) -> list[tuple[tuple[str, str], float]]:
        """((kind, target), at) of every attempt after ``since``, oldest first."""
        rows = self.db.execute("SELECT kind, target, at FROM heal_attempts WHERE at > ? ORDER BY at", (since,))
        return [((r["kind"], r["target"]), r["at"]) for r in rows.fetchall()]
