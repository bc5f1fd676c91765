"""The public status page: what ``/status.json`` says and ``/status`` shows, built without I/O.

``build_status`` turns the checks' current states, their per-day result counts (the store's day
roll-ups, which outlive the raw results) and the incidents' snapshots into one document: the overall
state (from the open incidents' severities), the services (checks grouped by ``group``, else their
first tag, else their own name) with up/down and a 90-day uptime history, the open incidents in the
public format (service, summary, status, started, impact, latest update, previous updates), the
recently resolved ones and the config's maintenance windows open now or within a week (silences made
through the API are internal: never shown). It copies only public fields:
comments (internal or not), evidence, timelines, targets, containers, authors and check messages
(which may name hosts) never reach it. ``render_html`` renders that document with the Jinja2
template shipped beside the code; Jinja2 is imported only when a page is rendered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from agent.maintenance import Window
from agent.timefmt import iso

DAYS = 90
DAY = 86400
RESOLVED_SHOWN_FOR = 7 * DAY  # resolved incidents listed for a week
RESOLVED_SHOWN = 10
MAINTENANCE_AHEAD = 7 * DAY  # scheduled maintenance listed a week ahead
MAINTENANCE_SHOWN = 20
TEMPLATE = Path(__file__).parent / "templates" / "status.html.j2"

OVERALL_LABELS = {
    "operational": "All systems operational",
    "degraded": "Degraded",
    "major_outage": "Major outage",
}
IMPACT = {
    "critical": "Major outage",
    "high": "Partial outage",
    "medium": "Degraded performance",
    "low": "Minor",
}
PHASE_LABELS = {
    "investigating": "Investigating",
    "identified": "Identified",
    "monitoring": "Monitoring",
    "resolved": "Resolved",
}


@dataclass(frozen=True, slots=True)
class CheckState:
    """One configured check as the status page knows it: its name, its service, up or down, and what
    maintenance windows match it by (tags, container), never shown."""

    name: str
    service: str
    up: bool | None  # None: no result yet
    tags: tuple[str, ...] = ()
    container: str | None = None


DayCount = tuple[str, int, int, int]
"""(check, day number since the epoch (UTC), results that passed, results)"""


def service_of(name: str, group: str | None, tags: Sequence[str]) -> str:
    """The service a check belongs to: its ``group``, else its first tag, else its own name."""
    return group or (tags[0] if tags else name)


def overall_state(open_incidents: Iterable[Mapping[str, Any]]) -> str:
    """``major_outage`` with a critical incident open, ``degraded`` with any other, else ``operational``."""
    severities = {str(i.get("severity")) for i in open_incidents}
    if "critical" in severities:
        return "major_outage"
    return "degraded" if severities else "operational"


def _day_level(uptime: float | None) -> str:
    if uptime is None:
        return "none"
    if uptime >= 100.0:
        return "up"
    return "partial" if uptime >= 95.0 else "down"


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")


def _uptime(ok: int, total: int) -> float | None:
    return None if total == 0 else round(100.0 * ok / total, 2)


def scheduled_maintenance(windows: Sequence[Window], checks: Sequence[CheckState], now: float) -> list[dict[str, Any]]:
    """The maintenance windows of the config that are open now or open within ``MAINTENANCE_AHEAD``
    and cover a shown check: name, "In progress" or "Scheduled", start, end and the services they
    affect; earliest first, at most ``MAINTENANCE_SHOWN``. Silences are internal and never listed."""
    found: list[tuple[float, str, dict[str, Any]]] = []
    for window in windows:
        services = sorted(
            {c.service for c in checks if window.match.covers(c.name, c.tags, c.container)}, key=str.casefold
        )
        if not services:
            continue
        for start, end in window.spans(now, now + MAINTENANCE_AHEAD):
            ongoing = start <= now
            found.append((start, window.name, {
                "name": window.name,
                "status": "In progress" if ongoing else "Scheduled",
                "in_progress": ongoing,
                "starts_at": iso(start),
                "ends_at": iso(end),
                "services": services,
            }))
    found.sort(key=lambda item: (item[0], item[1]))
    return [item for _, _, item in found[:MAINTENANCE_SHOWN]]


def build_status(
    *,
    title: str,
    now: float,
    checks: Sequence[CheckState],
    days: Iterable[DayCount],
    open_incidents: Sequence[Mapping[str, Any]],
    resolved: Sequence[Mapping[str, Any]],
    windows: Sequence[Window] = (),
) -> dict[str, Any]:
    """The status document (see the module's doc). ``days`` are the per-day roll-ups of the checks'
    results; ``open_incidents`` and ``resolved`` are incident snapshots (``payload.incident_snapshot``),
    of which only the public fields are copied; ``windows`` the config's maintenance windows."""
    today = int(now // DAY)
    first = today - DAYS + 1
    service_by_check = {c.name: c.service for c in checks}
    counts: dict[tuple[str, int], list[int]] = {}
    per_check: dict[str, list[int]] = {}
    for check, day, ok, total in days:
        service = service_by_check.get(check)
        if service is None or not first <= day <= today:
            continue
        tally = counts.setdefault((service, day), [0, 0])
        tally[0] += ok
        tally[1] += total
        tally = per_check.setdefault(check, [0, 0])
        tally[0] += ok
        tally[1] += total

    grouped: dict[str, list[CheckState]] = {}
    for check_state in checks:
        grouped.setdefault(check_state.service, []).append(check_state)
    open_services = {_service(i, service_by_check) for i in open_incidents}
    services = []
    for name in sorted(grouped, key=str.casefold):
        members = grouped[name]
        states = [c.up for c in members]
        status = "down" if False in states else ("up" if True in states else "unknown")
        if status == "up" and name in open_services:
            status = "degraded"
        bars = []
        ok_all = total_all = 0
        for day in range(first, today + 1):
            ok, total = counts.get((name, day), (0, 0))
            ok_all, total_all = ok_all + ok, total_all + total
            uptime = _uptime(ok, total)
            bars.append({"date": _date(day), "uptime": uptime, "level": _day_level(uptime)})
        services.append(
            {
                "name": name,
                "status": status,
                "checks": [
                    {"name": c.name, "status": _up_down(c.up), "uptime": _uptime(*per_check.get(c.name, (0, 0)))}
                    for c in members
                ],
                "uptime": _uptime(ok_all, total_all),
                "days": bars,
            }
        )

    state = overall_state(open_incidents)
    recent = [i for i in resolved if _resolved_at(i) >= now - RESOLVED_SHOWN_FOR][:RESOLVED_SHOWN]
    return {
        "title": title,
        "generated_at": iso(now),
        "overall": {"state": state, "label": OVERALL_LABELS[state]},
        "services": services,
        "incidents": [public_incident(i, service_by_check) for i in open_incidents],
        "resolved": [public_incident(i, service_by_check) for i in recent],
        "maintenance": scheduled_maintenance(windows, checks, now),
    }


def _up_down(up: bool | None) -> str:
    return "unknown" if up is None else ("up" if up else "down")


def _resolved_at(incident: Mapping[str, Any]) -> float:
    raw = incident.get("resolved_at")
    if not raw:
        return float("-inf")
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()


def _service(incident: Mapping[str, Any], service_by_check: Mapping[str, str]) -> str:
    affected = incident.get("affected_services") or []
    if affected:
        return ", ".join(str(s) for s in affected)
    check = str(incident.get("check") or "")
    return service_by_check.get(check, check) or "Service"


def _summary(incident: Mapping[str, Any], service_by_check: Mapping[str, str]) -> str:
    """A manual incident's title as written; a check's incident by the check's name only (its title
    quotes the check's message, which may name a host)."""
    if incident.get("manual"):
        return str(incident.get("title") or "")
    return f"{incident.get('check')} failing"


def public_incident(incident: Mapping[str, Any], service_by_check: Mapping[str, str]) -> dict[str, Any]:
    """One incident as the public sees it: no comments, evidence, timeline, target, host or author."""
    service = _service(incident, service_by_check)
    summary = _summary(incident, service_by_check)
    updates = [
        {"at": u["at"], "phase": u["phase"], "status": PHASE_LABELS.get(u["phase"], u["phase"]),
         "message": u["message"]}
        for u in reversed(list(incident.get("updates") or []))
    ]
    severity = str(incident.get("severity"))
    phase = str(incident.get("phase") or "investigating")
    return {
        "id": incident.get("id"),
        "heading": f"{service} - {summary}",
        "service": service,
        "summary": summary,
        "severity": severity,
        "status": PHASE_LABELS.get(phase, phase),
        "phase": phase,
        "impact": IMPACT.get(severity, severity),
        "started_at": incident.get("opened_at"),
        "resolved_at": incident.get("resolved_at"),
        "latest_update": updates[0] if updates else None,
        "previous_updates": updates[1:],
    }


@cache
def _template() -> Any:
    import jinja2  # only the status page needs it

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(TEMPLATE.read_text(encoding="utf-8"))


def render_html(document: Mapping[str, Any]) -> str:
    """The status page as HTML: readable on a phone, no JavaScript."""
    return str(_template().render(status=document))
