"""Check results: the raw history that evidence shows and the API reports, bounded per check, and
its roll-ups per check and UTC minute and day, which outlive it (the status page's 90 days).

A flush writes its results and updates the roll-ups in one transaction: SQLite sums the rows just
inserted per (check, minute) and per (check, day) (``INSERT … SELECT … GROUP BY … ON CONFLICT``),
so a flush costs one UPSERT per check and minute (and day) it touches, however many results it
carries, and no Python loop over them. Minutes and days are numbered since
the epoch (``started_at // 60``, ``started_at // 86400``), UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.store._repo import Repo

ResultRow = tuple[str, float, bool, float, str]
"""(check, started_at, ok, latency, message)"""

MINUTE = 60
DAY = 86400

_ROLL_UP = """
INSERT INTO {table} ({unit}, check_name, total, failing, latency_sum, latency_max)
SELECT CAST(started_at / {seconds} AS INTEGER), check_name, COUNT(*), SUM(ok = 0), SUM(latency), MAX(latency)
FROM results WHERE id > ? GROUP BY 1, 2
ON CONFLICT ({unit}, check_name) DO UPDATE SET
  total = total + excluded.total,
  failing = failing + excluded.failing,
  latency_sum = latency_sum + excluded.latency_sum,
  latency_max = MAX(latency_max, excluded.latency_max)
"""
# Summed by SQLite from the rows the flush just inserted (ids above the largest before it): no
# Python loop over the results, and the GIL is free while SQLite works.
_ROLL_UP_MINUTE = _ROLL_UP.format(table="results_minute", unit="minute", seconds=MINUTE)
_ROLL_UP_DAY = _ROLL_UP.format(table="results_day", unit="day", seconds=DAY)


class ResultsRepo(Repo):
    def add(self, rows: Iterable[ResultRow]) -> None:
        """Write results and add them to the minute and day roll-ups, in one transaction."""
        with self._store.transaction():
            before = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM results").fetchone()[0]
            self.db.executemany(
                "INSERT INTO results (check_name, started_at, ok, latency, message) VALUES (?,?,?,?,?)", rows
            )
            self.db.execute(_ROLL_UP_MINUTE, (before,))
            self.db.execute(_ROLL_UP_DAY, (before,))

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
        """Per check and UTC day (days since the epoch) from the day ``since`` falls in on, from the day
        roll-ups (today's so far): (check, day, passed, results)."""
        rows = self.db.execute(
            "SELECT check_name, day, total - failing, total FROM results_day WHERE day >= ? ORDER BY check_name, day",
            (int(since // DAY),),
        ).fetchall()
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def per_minute(self, check: str, since: float, until: float) -> list[dict[str, Any]]:
        """The minute roll-ups of one check in ``[since, until)``, oldest first: minute (its start, epoch
        seconds), total, failing, latency_sum, latency_max."""
        rows = self.db.execute(
            "SELECT minute, total, failing, latency_sum, latency_max FROM results_minute"
            " WHERE minute >= ? AND minute < ? AND check_name = ? ORDER BY minute",
            (int(since // MINUTE), int(-(-until // MINUTE)), check),
        ).fetchall()
        return [dict(r) | {"minute": int(r["minute"]) * MINUTE} for r in rows]

    def prune(self, keep_per_check: int) -> int:
        """Keep the newest ``keep_per_check`` raw results of each check (their roll-ups stay)."""
        names = [r[0] for r in self.db.execute("SELECT DISTINCT check_name FROM results")]
        return self.trim(names, keep_per_check)

    def trim(self, names: Iterable[str], keep_per_check: int) -> int:
        """Keep the newest ``keep_per_check`` raw results of each named check: per check, one index
        seek for the oldest kept id and one range delete below it, so the cost is what is deleted."""
        removed = 0
        for name in names:
            row = self.db.execute(
                "SELECT id FROM results WHERE check_name = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                (name, keep_per_check - 1),
            ).fetchone()
            if row is not None:
                removed += self.db.execute(
                    "DELETE FROM results WHERE check_name = ? AND id < ?", (name, row[0])
                ).rowcount
        return removed

    def prune_rollups(self, minutes_before: float, days_before: float) -> tuple[int, int]:
        """Drop minute roll-ups of minutes that ended before ``minutes_before`` and day roll-ups of days
        that ended before ``days_before``: (minutes removed, days removed)."""
        minutes = self.db.execute(
            "DELETE FROM results_minute WHERE minute < ?", (int(minutes_before // MINUTE),)
        ).rowcount
        days = self.db.execute("DELETE FROM results_day WHERE day < ?", (int(days_before // DAY),)).rowcount
        return minutes, days
