"""Pure builders of what leaves the agent: incident snapshots and ``lifeguard.incident/v1`` documents.

The schema is the contract with webhook receivers (``agent/schemas/incident-v1.schema.json``);
these functions are the only place its shape is written, and they do no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agent.events import Notification
from agent.incidents import sev_label
from agent.timefmt import iso as iso  # also imported from here by older callers

SCHEMA = "lifeguard.incident/v1"


def incident_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The list form of an incident (API ``/api/incidents``)."""
    return {
        "id": row["id"],
        "check": row["check_name"],
        "check_type": row["check_type"],
        "status": row["status"],
        "severity": row["severity"],
        "sev": sev_label(row["severity"]),
        "title": row["title"],
        "opened_at": iso(row["opened_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "phase": row.get("phase") or ("resolved" if row["status"] == "resolved" else "investigating"),
        "acknowledged_at": iso(row.get("acknowledged_at")),
        "assignee": row.get("assignee"),
        "manual": bool(row.get("manual")),
        "in_maintenance": bool(row.get("in_maintenance")),
        "flapping": bool(row.get("flapping")),
        "suppressed_by": row.get("suppressed_by"),
    }


def incident_snapshot(
    row: dict[str, Any],
    timeline: list[dict[str, Any]],
    comments: Sequence[dict[str, Any]] = (),
    updates: Sequence[dict[str, Any]] = (),
    impact: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The incident as it is now, as events and the API carry it (with the comments given, and
    ``impact``: the incidents of other checks it held back, as ``{check, incident_id}``)."""
    state = row["state"]
    if isinstance(state, str):
        state = json.loads(state)
    heal = None
    if row.get("max_restarts") is not None:
        heal = {
            "restarts": state.get("restarts", 0),
            "max_restarts": row["max_restarts"],
            "last_result": state.get("last_heal"),
        }
    return incident_summary(row) | {
        "target": row["target"],
        "container": row["container"],
        "resolve_reason": row["resolve_reason"],
        "heal": heal,
        "tags": _tags(row.get("tags")),
        "acknowledged_by": row.get("acknowledged_by"),
        "description": row.get("description"),
        "affected_services": _tags(row.get("affected_services")),
        "resolved_by": row.get("resolved_by"),
        "root_cause": row.get("root_cause"),
        "solution": row.get("solution"),
        "follow_ups": _tags(row.get("follow_ups")),
        "timeline": [
            {"at": iso(t["at"]), "kind": t["kind"], "message": t["message"], "author": t.get("author")}
            for t in timeline
        ],
        "comments": [
            {"at": iso(c["at"]), "author": c["author"], "text": c["text"], "internal": bool(c["internal"])}
            for c in comments
        ],
        "updates": [
            {"at": iso(u["at"]), "author": u["author"], "phase": u["phase"], "message": u["message"]}
            for u in updates
        ],
        "impact": [{"check": i["check"], "incident_id": i["incident_id"]} for i in impact],
    }


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(tag) for tag in value] if isinstance(value, list) else []


def event_document(notification: Notification) -> dict[str, Any]:
    """The ``lifeguard.incident/v1`` document of one notification: what webhooks and files carry."""
    event = notification.event
    evidence = dict(empty_evidence())
    if notification.evidence:
        evidence.update({k: notification.evidence.get(k) for k in evidence})
    evidence["url"] = notification.evidence_url
    return {
        "schema": SCHEMA,
        "event_id": event.id,
        "event": event.kind,
        "sequence": event.sequence,
        "occurred_at": iso(event.occurred_at),
        "agent": dict(event.agent),
        "reason": event.reason,
        "incident": event.incident,
        **event.fields,
        "evidence": evidence,
    }


def empty_evidence() -> dict[str, Any]:
    return {
        "phase": None,
        "collected_at": None,
        "checks": [],
        "response": None,
        "container": None,
        "host": None,
    }


def latest_bundle(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """The bundle an event carries: the resolved one once there is one, else the opening one."""
    return evidence.get("resolved") or evidence.get("opened")
