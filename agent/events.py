"""Incident events as data: what happened, stored once, rendered by each channel in its own way.

The incident writer stores an ``Event`` in the same transaction as the change that caused it.
At an event's first delivery attempt the outbox hands each notifier a ``Notification`` (the
event, the latest evidence bundle, where to see it) and the notifier renders its own request
from it with a pure function. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVENT_KINDS = (
    "incident.opened",
    "incident.heal_attempted",
    "incident.heal_succeeded",
    "incident.heal_failed",
    "incident.escalated",
    "incident.resolved",
    "incident.acknowledged",
    "incident.updated",
    "incident.commented",
    "incident.reminder",
)

# Events whose first delivery carries the evidence collected for that phase (bounded wait).
EVIDENCE_PHASE = {"incident.opened": "opened", "incident.resolved": "resolved"}


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to one incident, as it was when it happened."""

    id: str  # evt_…: the same on every retry and for every notifier
    kind: str  # one of EVENT_KINDS
    incident_id: str
    sequence: int  # 1, 2, … per incident: the order receivers get them in
    occurred_at: float  # epoch seconds
    agent: dict[str, str]  # {"name", "version"} of the agent that saw it
    incident: dict[str, Any]  # the incident snapshot (``payload.incident_snapshot``) at that moment
    reason: str | None = None  # why, where the kind needs one (escalated: "heal_exhausted")
    fields: dict[str, Any] = field(default_factory=dict)  # kind-specific extras


@dataclass(frozen=True, slots=True)
class Notification:
    """What a notifier renders: the event, the evidence known at the first attempt, and its link."""

    event: Event
    evidence: dict[str, Any] | None  # the latest bundle (resolved, else opened), or None
    evidence_url: str
    evidence_public: bool = False  # the link reaches the API from elsewhere (agent.api.public_url is set)


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An incident still open when the outbox starts, as it is now (``Notifier.resume`` gets these)."""

    incident: dict[str, Any]  # its snapshot (``payload.incident_snapshot``) now
    agent: dict[str, str]  # {"name", "version"} of this agent
    evidence: dict[str, Any] | None  # the latest bundle, or None
    evidence_url: str
