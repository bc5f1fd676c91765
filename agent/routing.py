"""Who hears about what: routes pick a check's notifiers, filters pick a notifier's events. Pure.

Routes are resolved once, when the config loads, because everything they match on is the check's
own (its name, severity, tags, container): a check's ``notify`` wins; otherwise the routes are
tried in order, the first that matches decides unless it says ``continue: true``; no match means
``defaults.notify``. Filters are a notifier's own (``events``, ``min_severity``) and apply to each
event as it is written to the outbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.incidents import SEVERITIES

EVENT_NAMES = {
    "opened": "incident.opened",
    "heal_attempted": "incident.heal_attempted",
    "heal_succeeded": "incident.heal_succeeded",
    "heal_failed": "incident.heal_failed",
    "escalated": "incident.escalated",
    "resolved": "incident.resolved",
    "acknowledged": "incident.acknowledged",
    "updated": "incident.updated",
    "commented": "incident.commented",
    "reminder": "incident.reminder",
}
"""The short names a notifier's ``events`` takes, and the events they mean."""


class Matchable(Protocol):
    """What a route matches on: a check's name, severity, tags and container."""

    @property
    def name(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def container(self) -> str | None: ...


class Match(Protocol):
    @property
    def severity(self) -> list[str] | None: ...
    @property
    def check(self) -> list[str] | None: ...
    @property
    def tags(self) -> list[str] | None: ...
    @property
    def container(self) -> list[str] | None: ...


class RouteLike(Protocol):
    @property
    def match(self) -> Match: ...
    @property
    def notify(self) -> list[str]: ...
    @property
    def continue_(self) -> bool: ...


def matches(match: Match, check: Matchable) -> bool:
    """Every field the match gives holds; a field lists alternatives (tags: any of them)."""
    if match.severity is not None and check.severity not in match.severity:
        return False
    if match.check is not None and check.name not in match.check:
        return False
    if match.tags is not None and not set(match.tags) & set(check.tags):
        return False
    return match.container is None or check.container in match.container


def route(check: Matchable, routes: Sequence[RouteLike], fallback: Sequence[str]) -> list[str] | None:
    """The notifiers the routes give ``check`` (in order, without repeats), or None if none matched."""
    found: list[str] = []
    matched = False
    for candidate in routes:
        if matches(candidate.match, check):
            matched = True
            found += [name for name in candidate.notify if name not in found]
            if not candidate.continue_:
                break
    return found if matched else None


@dataclass(frozen=True, slots=True)
class NotifierFilter:
    """The events one notifier takes: some kinds (None: all) of incidents at least this severe."""

    events: frozenset[str] | None = None  # full event kinds, e.g. "incident.opened"
    min_severity: str | None = None
    internal: bool = False  # takes internal comments (never the status page's or a customer's channel)

    @classmethod
    def of(cls, events: Iterable[str] | None, min_severity: str | None, internal: bool = False) -> NotifierFilter:
        kinds = None if events is None else frozenset(EVENT_NAMES.get(e, e) for e in events)
        return cls(kinds, min_severity, internal)

    def wants(self, event: str, severity: str) -> bool:
        if self.events is not None and event not in self.events:
            return False
        if self.min_severity is not None and severity in SEVERITIES:
            return SEVERITIES.index(severity) <= SEVERITIES.index(self.min_severity)
        return True


def recipients(
    notifiers: Sequence[str], filters: Mapping[str, NotifierFilter], event: str, severity: str
) -> list[str]:
    """Of a check's notifiers, those whose filters take this event."""
    everything = NotifierFilter()
    return [name for name in notifiers if filters.get(name, everything).wants(event, severity)]
