"""What each severity asks of the people running an incident, and when the agent reminds them.

``policies:`` gives each severity an acknowledge SLA (``ack_within``), a reminder period while
nobody has acknowledged (``remind_every``), a status-update period once someone has
(``update_every``), escalation steps (``escalate: [{after, notify}]``) and whether a postmortem
is required; ``postmortem_after`` requires one of any incident open longer than that.

The timers are computed from stored times only — when the incident opened, when it was
acknowledged, its last status update and what its timeline says already fired — never from
sleeps held in memory. ``due`` is the pure rule; ``PolicyTimer`` is the small component that
wakes at the next due moment, re-reads the store and hands each due item to the engine, which
checks it again under the incident's lock and records it on the timeline in the same
transaction as its event. So a restart (or a SIGKILL) fires what came due meanwhile once, and
never what already fired.

Rules, spelled out (the README's "Policies" says the same):
- Escalation step N (1-based) fires when the incident is still unacknowledged ``after`` its
  opening, once (timeline ``escalated``, "level N: …").
- ``ack_overdue`` is recorded once when ``ack_within`` passes unacknowledged; it sends nothing
  (the escalation steps page people).
- Unacknowledged: a reminder (``unacknowledged``) ``remind_every`` after the opening or the last
  such reminder. Acknowledged: a reminder (``update_due``) ``update_every`` after the latest of
  the acknowledgement, the last status update and the last such reminder. After a long stop,
  one reminder catches up, not one per missed period.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from agent.config.policies import (
    DEFAULT_POLICIES,
    DEFAULT_POSTMORTEM_AFTER,
    EscalationStep,
    PoliciesConfig,
    SeverityPolicy,
    postmortem_required,
)

log = structlog.get_logger("lifeguard.policies")

__all__ = [
    "DEFAULT_POLICIES",
    "DEFAULT_POSTMORTEM_AFTER",
    "Due",
    "EscalationStep",
    "IncidentClock",
    "PoliciesConfig",
    "PolicyTimer",
    "SeverityPolicy",
    "due",
    "next_due_at",
    "postmortem_required",
]


# --- the rule ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentClock:
    """The stored times of one unresolved incident the rule needs (``IncidentsRepo.clocks``)."""

    incident_id: str
    severity: str
    opened_at: float
    acknowledged_at: float | None = None
    last_update_at: float | None = None
    escalated_levels: frozenset[int] = frozenset()
    ack_overdue: bool = False
    last_unacknowledged_reminder: float | None = None
    last_update_due_reminder: float | None = None


DueKind = Literal["escalate", "ack_overdue", "remind_unacknowledged", "remind_update_due"]


@dataclass(frozen=True, slots=True)
class Due:
    """One thing the policy asks for now: its kind, its escalation level (1-based) and step."""

    kind: DueKind
    incident_id: str
    level: int = 0
    notify: tuple[str, ...] = ()
    after: float = 0.0


def _moments(clock: IncidentClock, policy: SeverityPolicy) -> list[tuple[float, Due]]:
    """Each pending item with the moment it comes due."""
    out: list[tuple[float, Due]] = []
    iid = clock.incident_id
    if clock.acknowledged_at is None:
        for i, step in enumerate(policy.escalate, start=1):
            if i not in clock.escalated_levels:
                out.append((clock.opened_at + step.after, Due("escalate", iid, i, tuple(step.notify), step.after)))
        if policy.ack_within is not None and not clock.ack_overdue:
            out.append((clock.opened_at + policy.ack_within, Due("ack_overdue", iid, after=policy.ack_within)))
        if policy.remind_every is not None:
            base = clock.last_unacknowledged_reminder or clock.opened_at
            out.append((base + policy.remind_every, Due("remind_unacknowledged", iid, after=policy.remind_every)))
    elif policy.update_every is not None:
        base = max(
            t for t in (clock.acknowledged_at, clock.last_update_at, clock.last_update_due_reminder) if t is not None
        )
        out.append((base + policy.update_every, Due("remind_update_due", iid, after=policy.update_every)))
    return out


def due(clock: IncidentClock, policy: SeverityPolicy, now: float) -> list[Due]:
    """What the policy asks for at ``now`` that has not been done yet. Pure."""
    return [item for at, item in sorted(_moments(clock, policy), key=lambda m: m[0]) if at <= now]


def next_due_at(clock: IncidentClock, policy: SeverityPolicy) -> float | None:
    """The earliest moment something of this incident comes due, or None if nothing ever will."""
    return min((at for at, _ in _moments(clock, policy)), default=None)


# --- the component ---------------------------------------------------------------------------------

LEVEL = re.compile(r"level (\d+):")


class PolicyTimer:
    """Wakes at the next due moment of any unresolved incident, re-reads the store and fires.

    ``read`` returns the stored clocks of every unresolved incident; ``fire`` is the engine's
    command, which checks the item again under the incident's lock before writing it. ``wake``
    makes it look again now (an incident opened, was acknowledged, changed severity).
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[Sequence[IncidentClock]]],
        fire: Callable[[Due], Awaitable[bool]],
        policies: Callable[[], PoliciesConfig],
        *,
        clock: Callable[[], float] = time.time,
        longest_sleep: float = 60.0,
    ) -> None:
        self.read = read
        self.fire = fire
        self.policies = policies
        self.clock = clock
        self.longest_sleep = longest_sleep
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def tick(self) -> float | None:
        """Fire everything due now; the next moment something will be (None: nothing pending)."""
        now = self.clock()
        policies = self.policies()
        upcoming: list[float] = []
        for clock in await self.read():
            policy = policies.of(clock.severity)
            for item in due(clock, policy, now):
                try:
                    await self.fire(item)
                except Exception as exc:  # the next tick tries again: it is still due
                    log.error("policy.fire_failed", incident_id=item.incident_id, kind=item.kind, error=str(exc))
            # What just fired is on the timeline now: the next moment comes from a fresh read.
        for clock in await self.read():
            at = next_due_at(clock, policies.of(clock.severity))
            if at is not None:
                upcoming.append(at)
        return min(upcoming, default=None)

    async def run(self) -> None:
        while True:
            try:
                next_at = await self.tick()
            except Exception as exc:  # a locked database: look again shortly
                log.error("policy.tick_failed", error=str(exc))
                next_at = None
            wait = self.longest_sleep if next_at is None else min(self.longest_sleep, max(0.0, next_at - self.clock()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.05))
            except TimeoutError:
                pass


def clocks_from_rows(
    incidents: Sequence[Mapping[str, Any]],
    timeline: Sequence[Mapping[str, Any]],
    last_updates: Mapping[str, float],
) -> list[IncidentClock]:
    """Build each unresolved incident's clock from its row, its policy timeline entries and its
    last status update (what ``IncidentsRepo.clocks`` reads)."""
    levels: dict[str, set[int]] = {}
    overdue: set[str] = set()
    reminders: dict[tuple[str, str], float] = {}
    for entry in timeline:
        iid, kind, message, at = entry["incident_id"], entry["kind"], entry["message"] or "", entry["at"]
        if kind == "escalated" and (m := LEVEL.match(message)):
            levels.setdefault(iid, set()).add(int(m.group(1)))
        elif kind == "ack_overdue":
            overdue.add(iid)
        elif kind == "reminder":
            reason = "update_due" if message.startswith("update_due") else "unacknowledged"
            key = (iid, reason)
            reminders[key] = max(at, reminders.get(key, at))
    return [
        IncidentClock(
            incident_id=row["id"],
            severity=row["severity"],
            opened_at=row["opened_at"],
            acknowledged_at=row["acknowledged_at"],
            last_update_at=last_updates.get(row["id"]),
            escalated_levels=frozenset(levels.get(row["id"], ())),
            ack_overdue=row["id"] in overdue,
            last_unacknowledged_reminder=reminders.get((row["id"], "unacknowledged")),
            last_update_due_reminder=reminders.get((row["id"], "update_due")),
        )
        for row in incidents
    ]
