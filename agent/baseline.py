"""Latency baselines: each check's rolling median latency, for conditions such as
``latency > 2x baseline``.

A median over an hour at one result a second is 3,600 samples per check, and there may be
thousands of checks, so no sample is kept: each check's passing results go into per-minute
histograms with logarithmic bins (each 2 % wide, so the median is within 1 % of the exact one),
and a running total of the minutes in the window. A result costs O(1) (plus an O(log n) insertion
when a latency lands in a bin no other result of the window is in). A median starts from the bin
where the last one was and steps to the neighbouring occupied bins (O(log n) each) until the middle
rank is reached: a step or none, as it moves little from one result to the next. Minutes that
leave the window are subtracted from the total. Every
minute is written to SQLite (``latency_minutes``) once it is over (and at stop) with the results'
flush, and read back at start, so a restart does not forget the baseline.

Only passing results count: a timeout or an error page says nothing of how fast the service is,
and a slowdown that fails a ``latency > 2x baseline`` condition does not raise its own baseline.
No baseline (``None``) until the window holds ``min_samples`` results.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["GAMMA", "Baselines", "LatencyWindow", "MinuteRow"]

GAMMA = 1.02
"""Ratio between neighbouring bins: a bin's value is within 1 % of every latency in it."""
_LOG_GAMMA = math.log(GAMMA)
_FLOOR = 1e-6  # seconds: faster results share the lowest bin
MINUTE = 60.0

MinuteRow = tuple[str, int, str]
"""(check, minute since the epoch, JSON of {bin: count}) as stored."""


def bin_of(latency: float) -> int:
    return round(math.log(max(latency, _FLOOR)) / _LOG_GAMMA)


def value_of(index: int) -> float:
    return float(GAMMA**index)


class LatencyWindow:
    """One check's passing latencies of the last ``window`` seconds, in minutes of binned counts."""

    def __init__(self, window: float, min_samples: int) -> None:
        self.minutes_kept = max(1, math.ceil(window / MINUTE))
        self.min_samples = min_samples
        self._minutes: deque[tuple[int, dict[int, int]]] = deque()  # oldest first
        self._total: dict[int, int] = {}
        self._bins: list[int] = []  # the occupied bins of the total, sorted
        self.count = 0
        # Where the last median was found, and how many results lie in bins below it.
        self._cursor = 0
        self._below = 0

    def add(self, at: float, latency: float) -> int:
        """Count one result; the minute it went into."""
        minute = int(at // MINUTE)
        self.expire(minute)
        if self._minutes and minute < self._minutes[-1][0]:
            # Out of order (a clock step back): into its minute if still in the window.
            found = next((counts for m, counts in self._minutes if m == minute), None)
            if found is None:
                return minute
            counts = found
        else:
            if not self._minutes or self._minutes[-1][0] != minute:
                self._minutes.append((minute, {}))
            counts = self._minutes[-1][1]
        index = bin_of(latency)
        counts[index] = counts.get(index, 0) + 1
        self._count_in(index, 1)
        return minute

    def _count_in(self, index: int, n: int) -> None:
        before = self._total.get(index, 0)
        after = before + n
        self.count += n
        if index < self._cursor:
            self._below += n
        if after:
            self._total[index] = after
            if not before:
                bisect.insort(self._bins, index)
        else:
            del self._total[index]
            del self._bins[bisect.bisect_left(self._bins, index)]

    def expire(self, minute: int) -> None:
        """Drop the minutes that are out of the window ending in ``minute``."""
        oldest = minute - self.minutes_kept + 1
        while self._minutes and self._minutes[0][0] < oldest:
            _, counts = self._minutes.popleft()
            for index, n in counts.items():
                self._count_in(index, -n)

    def load(self, minute: int, counts: dict[int, int]) -> None:
        """A stored minute (read oldest first at start)."""
        if self._minutes and minute <= self._minutes[-1][0]:
            return
        self._minutes.append((minute, dict(counts)))
        for index, n in counts.items():
            self._count_in(index, n)

    def minute(self, minute: int) -> dict[int, int] | None:
        return next((counts for m, counts in reversed(self._minutes) if m == minute), None)

    def minutes(self) -> list[tuple[int, dict[int, int]]]:
        return list(self._minutes)

    def median(self) -> float | None:
        """The median latency in seconds (within 1 %), or None below ``min_samples`` results."""
        if self.count < self.min_samples or not self.count:
            return None
        low_rank = (self.count - 1) // 2  # 0-based ranks of the middle one or two
        bins, total = self._bins, self._total
        cursor, below = self._cursor, self._below
        while below > low_rank:  # the median is in a lower bin: step down
            cursor = bins[bisect.bisect_left(bins, cursor) - 1]
            below -= total[cursor]
        while below + total.get(cursor, 0) <= low_rank:  # in a higher bin: step up
            below += total.get(cursor, 0)
            cursor = bins[bisect.bisect_right(bins, cursor)]
        self._cursor, self._below = cursor, below
        high = cursor
        if below + total[cursor] <= self.count // 2:
            high = bins[bisect.bisect_right(bins, cursor)]
        return (value_of(cursor) + value_of(high)) / 2

    def median_by_walking(self) -> float | None:
        """``median`` the slow, obvious way: every occupied bin from the lowest (for tests)."""
        if self.count < self.min_samples or not self.count:
            return None
        low_rank, high_rank = (self.count - 1) // 2, self.count // 2
        seen, low = 0, None
        for index in self._bins:
            seen += self._total[index]
            if low is None and seen > low_rank:
                low = value_of(index)
            if seen > high_rank:
                assert low is not None
                return (low + value_of(index)) / 2
        raise AssertionError("the bins hold fewer results than counted")


class Baselines:
    """Every check's ``LatencyWindow``; ``median`` is the provider ``CheckContext.baseline`` calls."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._windows: dict[str, LatencyWindow] = {}
        self._dirty: set[tuple[str, int]] = set()

    def configure(self, check: str, window: float, min_samples: int) -> None:
        """Watch a check (again: a reload), keeping the minutes it still has that fit the window."""
        new = LatencyWindow(window, min_samples)
        old = self._windows.get(check)
        if old is not None:
            for minute, counts in old.minutes():
                new.load(minute, counts)
            new.expire(int(self.clock() // MINUTE))
        self._windows[check] = new

    def watch(self, config: Any) -> None:
        """Keep a baseline for a check whose config asks for one (``baseline_rule``), else none."""
        rule = config.baseline_rule
        if rule is None:
            self.forget(config.name)
        else:
            self.configure(config.name, rule.window, rule.min_samples)

    def forget(self, check: str) -> None:
        self._windows.pop(check, None)

    def record(self, check: str, at: float, latency: float) -> None:
        window = self._windows.get(check)
        if window is not None:
            self._dirty.add((check, window.add(at, latency)))

    def median(self, check: str) -> float | None:
        """The check's baseline latency in seconds now, or None (unknown check, too few results)."""
        window = self._windows.get(check)
        if window is None:
            return None
        window.expire(int(self.clock() // MINUTE))
        return window.median()

    def restore(self, rows: Iterable[MinuteRow]) -> None:
        """Stored minutes, oldest first: each watched check's window picks up the ones it covers."""
        now_minute = int(self.clock() // MINUTE)
        for check, minute, text in rows:
            window = self._windows.get(check)
            if window is not None and minute > now_minute - window.minutes_kept:
                window.load(minute, {int(k): int(v) for k, v in json.loads(text).items()})

    def pending(self, *, everything: bool = False) -> list[MinuteRow]:
        """The minutes changed since they were last taken, to write (``retry`` them if the write
        fails): those that are over, each once, rather than the current one every flush (a crash
        loses at most its results); with ``everything`` (at stop) the current ones too."""
        current = int(self.clock() // MINUTE)
        rows = []
        for check, minute in sorted(self._dirty):
            if minute >= current and not everything:
                continue
            self._dirty.discard((check, minute))
            window = self._windows.get(check)
            counts = window.minute(minute) if window is not None else None
            if counts:
                rows.append((check, minute, json.dumps({str(k): v for k, v in sorted(counts.items())})))
        return rows

    def retry(self, rows: Iterable[MinuteRow]) -> None:
        self._dirty.update((check, minute) for check, minute, _ in rows)
