"""Maintenance: when a check's incidents are recorded but nothing is sent and nothing healed.

Two sources say so. Windows in the config (``maintenance:``), fixed (``start``–``end``) or
recurring (``cron`` plus ``duration``), and silences made through the API for a while. Both match
checks the same way (``Match``: a check name, a tag, a container; every field given must match,
any value of a field may). ``Quiet`` is what a check is under at a moment: the window or silence
that silences it, and whether it still lets heals run (``heal: true``, windows only).

The cron matcher takes the five classic fields (minute, hour, day of month, month, day of week)
with ``*``, numbers, ranges, lists, steps and the English three-letter names of months and
days; times are UTC. A window is open from each moment its expression matches, for its
duration. The last and next matching minute are found a field at a time (a day that cannot match
is skipped whole), not minute by minute: ``open_at`` runs for every result, and the status page
lists a week of windows ahead. Written here rather than taken from a library: the whole grammar is a few dozen
lines, and the agent's dependencies are kept to what it cannot do without.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SILENCE_PREFIX = "sil"
_DAY = 86400
_SPAN_STEPS = 2000
EXPIRED_LISTED = 24 * 3600.0
"""Seconds an expired silence stays listed (as ``expired``) before it is forgotten."""


@dataclass(frozen=True, slots=True)
class Match:
    """What a window or silence covers. Empty fields are not looked at; an empty match covers everything."""

    check: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    container: tuple[str, ...] = ()

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Match:
        data = data or {}
        return cls(
            tuple(data.get("check") or ()), tuple(data.get("tags") or ()), tuple(data.get("container") or ())
        )

    def covers(self, check: str, tags: Iterable[str], container: str | None) -> bool:
        if self.check and check not in self.check:
            return False
        if self.tags and not set(self.tags) & set(tags):
            return False
        return not (self.container and container not in self.container)

    def view(self) -> dict[str, list[str]]:
        return {"check": list(self.check), "tags": list(self.tags), "container": list(self.container)}

    @property
    def empty(self) -> bool:
        return not (self.check or self.tags or self.container)


@dataclass(frozen=True, slots=True)
class Quiet:
    """The window or silence a check is under now."""

    name: str  # a window's name, or "silence sil_…"
    heal: bool = False


# -- cron ------------------------------------------------------------------------------------
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


class CronError(ValueError):
    """A cron expression that cannot be read; the message names the field and what is wrong."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed five-field cron expression (UTC)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *
    _hours_sorted: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _minutes_sorted: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hours_sorted", tuple(sorted(self.hours)))
        object.__setattr__(self, "_minutes_sorted", tuple(sorted(self.minutes)))

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
        sets = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(text, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")

    def matches(self, at: float) -> bool:
        """Whether the expression matches the UTC minute ``at`` falls in."""
        t = time.gmtime(at)
        if t.tm_min not in self.minutes or t.tm_hour not in self.hours or t.tm_mon not in self.months:
            return False
        day_ok = t.tm_mday in self.days
        weekday_ok = (t.tm_wday + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:  # cron's rule: both restricted means either one
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def day_matches(self, day: int) -> bool:
        """Whether the UTC day ``day`` (days since the epoch) has matching minutes."""
        t = time.gmtime(day * _DAY)
        if t.tm_mon not in self.months:
            return False
        day_ok = t.tm_mday in self.days
        weekday_ok = (t.tm_wday + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def last_start(self, at: float, within: float) -> float | None:
        """The latest matching minute in ``(at - within, at]``, or None.

        It steps back a field at a time (a day that does not match is skipped whole, then an hour,
        then to the previous matching minute), so a week's search costs a few hundred steps at most."""
        minute = int(at // 60) * 60
        earliest = at - within
        while minute > earliest:
            day_start = minute - minute % _DAY
            if not self.day_matches(day_start // _DAY):
                minute = day_start - 60
                continue
            hour = (minute - day_start) // 3600
            if hour not in self.hours:
                earlier = [h for h in self._hours_sorted if h < hour]
                minute = day_start + earlier[-1] * 3600 + 59 * 60 if earlier else day_start - 60
                continue
            hour_start = day_start + hour * 3600
            m = (minute - hour_start) // 60
            if m in self.minutes:
                return float(minute)
            earlier = [x for x in self._minutes_sorted if x < m]
            minute = hour_start + earlier[-1] * 60 if earlier else hour_start - 60
        return None

    def next_start(self, at: float, within: float) -> float | None:
        """The earliest matching minute in ``[at, at + within)``, or None (stepping forward as
        ``last_start`` steps back)."""
        minute = int(-(-at // 60)) * 60
        latest = at + within
        while minute < latest:
            day_start = minute - minute % _DAY
            if not self.day_matches(day_start // _DAY):
                minute = day_start + _DAY
                continue
            hour = (minute - day_start) // 3600
            if hour not in self.hours:
                later = [h for h in self._hours_sorted if h > hour]
                minute = day_start + later[0] * 3600 if later else day_start + _DAY
                continue
            hour_start = day_start + hour * 3600
            m = (minute - hour_start) // 60
            if m in self.minutes:
                return float(minute)
            later = [x for x in self._minutes_sorted if x > m]
            minute = hour_start + later[0] * 60 if later else hour_start + 3600
        return None



def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    found: set[int] = set()
    for item in text.split(","):
        step = 1
        if "/" in item:
            item, _, step_text = item.partition("/")
            if not step_text.isascii() or not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if item == "*":
            first, last = low, high
        elif "-" in item:
            a, _, b = item.partition("-")
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last:
                raise CronError(f"{name}: range {item!r} runs backwards")
        else:
            first = last = _value(item, name, low, high, names)
            if step != 1:
                last = high
        found.update(range(first, last + 1, step))
    return frozenset(found)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isascii() or not text.isdigit():
        raise CronError(f"{name}: expected a number {low}-{high}" + (" or a name" if names else "") + f", got {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is outside {low}-{high}")
    return value


# -- windows and silences --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Window:
    """A maintenance window of the config: fixed (``start``/``end``) or recurring (``cron``/``duration``)."""

    name: str
    match: Match = field(default_factory=Match)
    heal: bool = False
    start: float | None = None
    end: float | None = None
    cron: Cron | None = None
    duration: float = 0.0

    def open_at(self, now: float) -> bool:
        if self.cron is not None:
            return self.cron.last_start(now, self.duration) is not None
        return self.start is not None and self.end is not None and self.start <= now < self.end

    def spans(self, now: float, until: float, *, limit: int = 7) -> list[tuple[float, float]]:
        """When it is open, as (start, end) spans that end after ``now`` and begin before ``until``,
        earliest first, at most ``limit``. Occurrences of a cron window that overlap or touch make one
        span, and an ongoing span starts at the first of them; the walk is bounded (``_SPAN_STEPS``
        occurrences back and as many ahead), so a window that never closes shows a span of that many repeats."""
        if self.cron is None:
            if self.start is None or self.end is None or self.end <= now or self.start >= until:
                return []
            return [(self.start, self.end)]
        cron, duration = self.cron, self.duration
        current = cron.last_start(now, duration)
        if current is None:
            current = cron.next_start(now, until - now)
        if current is None:
            return []
        start, steps = current, 0
        while steps < _SPAN_STEPS:  # back over the occurrences that run into the one open now
            earlier = cron.last_start(start - 60, duration - 59)
            if earlier is None:
                break
            start, steps = earlier, steps + 1
        found: list[tuple[float, float]] = []
        end, steps = current + duration, 0
        while steps < _SPAN_STEPS:
            steps += 1
            later = cron.next_start(current + 60, until - current - 60)
            if later is None:
                break
            if later > end:
                found.append((start, end))
                if len(found) == limit:
                    return found
                start, end = later, later + duration
            else:
                end = max(end, later + duration)
            current = later
        found.append((start, end))
        return found


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence made through the API, as the engine keeps it in memory."""

    id: str
    match: Match
    starts_at: float
    ends_at: float

    def active_at(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at


def quiet_for(
    windows: Sequence[Window], silences: Iterable[Silence], now: float,
    check: str, tags: Iterable[str], container: str | None,
) -> Quiet | None:
    """What silences this check now (a window that lets heals run wins), or None."""
    tags = tuple(tags)
    found: Quiet | None = None
    for w in windows:
        if w.open_at(now) and w.match.covers(check, tags, container):
            if w.heal:
                return Quiet(w.name, heal=True)
            found = found or Quiet(w.name)
    if found is not None:
        return found
    for s in silences:
        if s.active_at(now) and s.match.covers(check, tags, container):
            return Quiet(f"silence {s.id}")
    return None


def silence_view(row: dict[str, Any], now: float) -> dict[str, Any]:
    """A silence as the API shows it."""
    from agent.timefmt import iso

    match = Match.of(row["match"]).view()
    return {
        "id": row["id"],
        "match": match,
        "starts_at": iso(row["starts_at"]),
        "ends_at": iso(row["ends_at"]),
        "comment": row["comment"],
        "created_by": row["created_by"],
        "status": "active" if row["starts_at"] <= now < row["ends_at"] else "expired",
    }
