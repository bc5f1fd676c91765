"""The incident report: how the practice did over a period, from stored incidents only.

``incident_report`` is a pure function of the rows ``ReportsRepo.history`` reads, so its figures
are tested against values computed by hand. Definitions (the README's "Incident report" says
the same), over the incidents OPENED in the period, each counted under its severity as it is now:

- MTTA: mean of ``acknowledged_at - opened_at`` over the acknowledged ones.
- MTTR: mean of ``resolved_at - opened_at`` over the resolved ones.
- MTTD: mean of ``opened_at - failing_since`` (the start of the first failing result of the
  streak that opened it) over check incidents that know it; manual incidents have none.
- Acknowledge SLA (severities whose policy has ``ack_within``): missed when the timeline has
  ``ack_overdue``, when acknowledged later than ``ack_within``, or when never acknowledged and
  open longer than that; met when acknowledged within it; otherwise (resolved unacknowledged
  before it ran out) counted as neither.
- Heal success rate: ``heal_succeeded`` / ``heal_attempted`` entries (dry runs are not attempts).
- Recurring: a check incident opened within 24 h of the resolution of that check's previous one.
- Postmortems: resolved incidents that required one, and how many of those have a draft.
- Time in maintenance: for incidents recorded in maintenance, from their opening to the end of
  the maintenance (``maintenance_ended``), their resolution, or the end of the period.
- Targets: each configured target is met when the mean is below it (``null`` without data).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from statistics import fmean
from typing import Any

from agent.config.policies import PoliciesConfig, postmortem_required
from agent.config.report import ReportTarget
from agent.incidents import SEVERITIES, sev_label
from agent.timefmt import iso

RECURRING_WITHIN = 86400.0
"""An incident opened this soon after its check's previous one resolved is a recurrence."""

Row = Mapping[str, Any]


def _mean(values: Sequence[float]) -> float | None:
    return round(fmean(values), 3) if values else None


def ack_sla(row: Row, ack_within: float | None, overdue: bool, until: float) -> bool | None:
    """True met, False missed, None not counted (no SLA, or resolved unacknowledged in time)."""
    if ack_within is None:
        return None
    if overdue:
        return False
    if row["acknowledged_at"] is not None:
        return bool(row["acknowledged_at"] - row["opened_at"] <= ack_within)
    end = row["resolved_at"] if row["resolved_at"] is not None else until
    return False if end - row["opened_at"] > ack_within else None


def incident_report(
    incidents: Iterable[Row],
    timeline: Iterable[Row],
    *,
    since: float,
    until: float,
    policies: PoliciesConfig,
    postmortem_after: float,
    targets: Sequence[ReportTarget],
) -> dict[str, Any]:
    """The report of the incidents opened in [since, until] (see the module's definitions). Pure."""
    rows = sorted(incidents, key=lambda r: (r["opened_at"], r["id"]))
    period = [r for r in rows if since <= r["opened_at"] <= until]
    entries: dict[str, list[Row]] = {}
    for entry in timeline:
        entries.setdefault(entry["incident_id"], []).append(entry)

    def kinds(row: Row, kind: str) -> list[Row]:
        return [e for e in entries.get(row["id"], []) if e["kind"] == kind]

    by_severity: dict[str, dict[str, Any]] = {}
    for severity in SEVERITIES:
        mine = [r for r in period if r["severity"] == severity]
        ack_within = policies.of(severity).ack_within
        sla = [ack_sla(r, ack_within, bool(kinds(r, "ack_overdue")), until) for r in mine]
        by_severity[severity] = {
            "count": len(mine),
            "mtta_s": _mean([r["acknowledged_at"] - r["opened_at"] for r in mine if r["acknowledged_at"] is not None]),
            "mttr_s": _mean([r["resolved_at"] - r["opened_at"] for r in mine if r["resolved_at"] is not None]),
            "mttd_s": _mean(
                [r["opened_at"] - r["failing_since"] for r in mine
                 if not r["manual"] and r["failing_since"] is not None]
            ),
            "ack_sla_met": sum(1 for s in sla if s is True),
            "ack_sla_missed": sum(1 for s in sla if s is False),
        }

    attempted = sum(
        1 for r in period for e in kinds(r, "heal_attempted") if not str(e["message"] or "").startswith("dry run")
    )
    succeeded = sum(len(kinds(r, "heal_succeeded")) for r in period)

    recurring: list[str] = []
    previous: dict[str, Row] = {}
    for r in rows:
        if r["manual"]:
            continue
        before = previous.get(r["check_name"])
        if r in period and before is not None and before["resolved_at"] is not None:
            if 0 <= r["opened_at"] - before["resolved_at"] <= RECURRING_WITHIN:
                recurring.append(r["id"])
        previous[r["check_name"]] = r

    required = written = 0
    for r in period:
        if r["resolved_at"] is None:
            continue
        needed = r["postmortem_required"]
        if needed is None:
            policy = policies.of(r["severity"])
            needed = postmortem_required(policy, r["opened_at"], r["resolved_at"], postmortem_after)
        if needed:
            required += 1
            written += bool(r["postmortem_path"])

    in_maintenance = 0
    maintenance_time = 0.0
    for r in period:
        if not kinds(r, "maintenance"):
            continue
        in_maintenance += 1
        ends = [e["at"] for e in kinds(r, "maintenance_ended")]
        end = min(ends) if ends else (r["resolved_at"] if r["resolved_at"] is not None else until)
        maintenance_time += max(0.0, min(end, until) - r["opened_at"])

    return {
        "since": iso(since),
        "until": iso(until),
        "total": len(period),
        "unresolved": sum(1 for r in period if r["resolved_at"] is None),
        "by_severity": by_severity,
        "by_check": dict(Counter(r["check_name"] or "(manual)" for r in period).most_common()),
        "heals": {"attempted": attempted, "succeeded": succeeded},
        "heal_success_rate": round(succeeded / attempted, 3) if attempted else None,
        "recurring": {"count": len(recurring), "incidents": recurring},
        "postmortems": {"required": required, "written": written},
        "maintenance": {"incidents": in_maintenance, "time_s": round(maintenance_time, 3)},
        "targets": target_results(by_severity, targets),
    }


def target_results(
    by_severity: Mapping[str, Mapping[str, Any]], targets: Sequence[ReportTarget]
) -> list[dict[str, Any]]:
    """Each target with the period's mean and whether it was met (None: no incident to judge by)."""
    out = []
    for target in targets:
        for measure, limit in target.goals():
            actual = by_severity[target.severity][f"{measure}_s"]
            out.append(
                {
                    "name": target.name(measure, limit),
                    "severity": target.severity,
                    "measure": measure,
                    "target_s": limit,
                    "actual_s": actual,
                    "met": None if actual is None else actual < limit,
                }
            )
    return out


def _seconds(value: float | None, human: Callable[[float | None], str | None]) -> str:
    return "-" if value is None else str(human(value))


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """The report for people: a table per severity, then the rest in a few lines."""
    from agent.postmortem import human_duration

    lines = [f"Incidents opened {report['since']} - {report['until']}: {report['total']}"
             f" ({report['unresolved']} unresolved)", ""]
    table = [("SEVERITY", "COUNT", "MTTA", "MTTR", "MTTD", "ACK SLA MET", "MISSED")]
    for severity, s in report["by_severity"].items():
        table.append((
            f"{sev_label(severity)} {severity}", str(s["count"]), _seconds(s["mtta_s"], human_duration),
            _seconds(s["mttr_s"], human_duration), _seconds(s["mttd_s"], human_duration),
            str(s["ack_sla_met"]), str(s["ack_sla_missed"]),
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    rate = report["heal_success_rate"]
    heals = report["heals"]
    lines += [
        "",
        f"Heals: {heals['succeeded']} of {heals['attempted']} succeeded"
        + ("" if rate is None else f" ({rate * 100:.0f}%)"),
        f"Recurring (within 24h of the previous resolution): {report['recurring']['count']}",
        f"Postmortems: {report['postmortems']['written']} written of {report['postmortems']['required']} required",
        f"In maintenance: {report['maintenance']['incidents']} incidents,"
        f" {human_duration(report['maintenance']['time_s'])}",
    ]
    if report["by_check"]:
        lines.append("By check: " + ", ".join(f"{name} {n}" for name, n in report["by_check"].items()))
    if report["targets"]:
        lines += ["", "Targets:"]
        for t in report["targets"]:
            verdict = "no data" if t["met"] is None else ("met" if t["met"] else "MISSED")
            lines.append(f"  {t['name']}: {verdict} ({_seconds(t['actual_s'], human_duration)})")
    return lines
