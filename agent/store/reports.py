"""What the incident report reads: the incidents of a period and the timeline entries it counts."""

from __future__ import annotations

from typing import Any

from agent.store._repo import Repo

REPORT_KINDS = ("heal_attempted", "heal_succeeded", "ack_overdue", "maintenance", "maintenance_ended")
"""Timeline kinds the report counts (heals, the acknowledge SLA, time in maintenance)."""

_COLUMNS = (
    "id, check_name, severity, manual, opened_at, acknowledged_at, resolved_at, failing_since,"
    " postmortem_required, postmortem_path"
)


class ReportsRepo(Repo):
    def history(self, since: float, until: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(incidents, timeline entries): every incident opened in [since, until], and before them
        the last incident of each of their checks opened earlier (to tell a recurrence); the entries
        of kinds ``REPORT_KINDS`` of the incidents of the period."""
        incidents = self.db.execute(
            f"SELECT {_COLUMNS} FROM incidents WHERE opened_at >= ? AND opened_at <= ?"
            f" UNION SELECT {_COLUMNS} FROM incidents i WHERE i.manual = 0 AND i.opened_at < ? AND i.opened_at ="
            " (SELECT MAX(j.opened_at) FROM incidents j WHERE j.manual = 0 AND j.check_name = i.check_name"
            " AND j.opened_at < ?) AND i.check_name IN"
            " (SELECT check_name FROM incidents WHERE manual = 0 AND opened_at >= ? AND opened_at <= ?)"
            " ORDER BY opened_at, id",
            (since, until, since, since, since, until),
        ).fetchall()
        marks = ", ".join("?" * len(REPORT_KINDS))
        timeline = self.db.execute(
            "SELECT t.incident_id, t.at, t.kind, t.message FROM timeline t JOIN incidents i ON i.id = t.incident_id"
            f" WHERE i.opened_at >= ? AND i.opened_at <= ? AND t.kind IN ({marks}) ORDER BY t.id",
            (since, until, *REPORT_KINDS),
        ).fetchall()
        return [dict(r) for r in incidents], [dict(t) for t in timeline]
