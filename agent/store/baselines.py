"""Latency baselines per check and minute (``agent.baseline``), so a restart keeps the median."""

from __future__ import annotations

from collections.abc import Iterable

from agent.baseline import MinuteRow
from agent.store._repo import Repo


class BaselinesRepo(Repo):
    def save(self, rows: Iterable[MinuteRow]) -> None:
        """Write each minute as it now is (a minute still filling is written again later)."""
        with self._store.transaction():
            self.db.executemany(
                "INSERT INTO latency_minutes (check_name, minute, counts) VALUES (?,?,?)"
                " ON CONFLICT (check_name, minute) DO UPDATE SET counts = excluded.counts",
                rows,
            )

    def since(self, minute: int) -> list[MinuteRow]:
        """Every check's minutes from ``minute`` on, oldest first."""
        rows = self.db.execute(
            "SELECT check_name, minute, counts FROM latency_minutes WHERE minute >= ? ORDER BY minute, check_name",
            (minute,),
        ).fetchall()
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]

    def prune(self, before_minute: int) -> int:
        return self.db.execute("DELETE FROM latency_minutes WHERE minute < ?", (before_minute,)).rowcount
