"""Check results: the history that evidence shows and the API reports, bounded per check."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.store._repo import Repo

ResultRow = tuple[str, float, bool, float, str]
"""(check, started_at, ok, latency, message)"""


class ResultsRepo(Repo):
    def add(self, rows: Iterable[ResultRow]) -> None:
        with self._store.transaction():
            self.db.executemany(
                "INSERT INTO results (check_name, started_at, ok, latency, message) VALUES (?,?,?,?,?)", rows
            )

    def recent(self, check: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT started_at, ok, latency, message FROM results WHERE check_name = ? ORDER BY id DESC LIMIT ?",
            (check, limit),
        ).fetchall()
        return [dict(r) | {"ok": bool(r["ok"])} for r in reversed(rows)]

    def seeds(self, check: str, since: float, at_least: int) -> list[tuple[float, bool]]:
        """(started_at, ok) of the check's results from ``since`` on, and at least its last
        ``at_least`` whatever their age, oldest first (the windows of ``agent.rates`` start from them)."""
        rows = self.db.execute(
            "SELECT started_at, ok FROM (SELECT id, started_at, ok, ROW_NUMBER() OVER (ORDER BY id DESC) AS n"
            " FROM results WHERE check_name = ?) WHERE started_at >= ? OR n <= ? ORDER BY id",
            (check, since, at_least),
        ).fetchall()
        return [(float(r[0]), bool(r[1])) for r in rows]

    def daily(self, since: float) -> list[tuple[str, int, int, int]]:
        """Per check and UTC day (days since the epoch) from ``since`` on: (check, day, passed, results)."""
        rows = self.db.execute(
            "SELECT check_name, CAST(started_at / 86400 AS INTEGER) AS day, SUM(ok), COUNT(*) FROM results"
            " WHERE started_at >= ? GROUP BY check_name, day ORDER BY check_name, day",
            (since,),
        ).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def prune(self, keep_per_check: int) -> int:
        return self.db.execute(
            """
            DELETE FROM results WHERE id IN (
              SELECT id FROM (
                SELECT id, ROW_NUMBER() OVER (PARTITION BY check_name ORDER BY id DESC) AS n
                FROM results) WHERE n > ?)
            """,
            (keep_per_check,),
        ).rowcount
