"""Prometheus metrics: tallies the components keep, and ``/metrics`` built from them at scrape time.

The agent checks a thousand targets a second, so nothing here touches a Prometheus object per
check run: the scheduler, the engine and the outbox each own a tally of plain dicts and small
histograms (``CheckTally``, ``EngineTally``, ``DeliveryTally``: one dict increment, one bisect),
and everything else — whether a check is up, open incidents, heal budgets, pending deliveries — is
read from the components' own state when Prometheus asks. A scrape copies that state on the event
loop (a snapshot, cheap), then builds and formats the families in a worker thread through
``prometheus_client`` with a private ``CollectorRegistry``; ``prometheus_client`` is imported at
the first scrape, so an agent nobody scrapes never loads it.

Counters start at zero with each run (Prometheus's convention: ``rate()`` copes with resets);
gauges are right from the first scrape after a restart, because the engine restores open
incidents, recent results and the heal budget from SQLite before the API serves, and the outbox's
pending figures are read from the store before it does too.

``record_reload(result)`` counts a config reload; it is process-wide, as a reload is.
"""

from __future__ import annotations

import asyncio
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client.registry import CollectorRegistry

# Seconds. A check's duration is bounded by its timeout (10 s by default); lag is small when all is well.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The text format Prometheus has read since 2014, as every scraper understands it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Observations in fixed buckets (``le`` bounds), their count per bucket and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> Histogram:
        other = Histogram(self.bounds)
        other.counts = list(self.counts)
        other.total = self.total
        return other

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them: cumulative, ending with +Inf."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else _le(bound), float(running)))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass(slots=True)
class CheckTally:
    """What the scheduler counts per run: runs by outcome, durations per check, lag behind schedule."""

    runs: dict[tuple[str, bool], int] = field(default_factory=dict)
    durations: dict[str, Histogram] = field(default_factory=dict)
    lag: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))

    def ran(self, check: str, ok: bool, duration: float) -> None:
        key = (check, ok)
        self.runs[key] = self.runs.get(key, 0) + 1
        hist = self.durations.get(check)
        if hist is None:
            hist = self.durations[check] = Histogram(DURATION_BUCKETS)
        hist.observe(duration)

    def late(self, seconds: float) -> None:
        self.lag.observe(max(0.0, seconds))

    def forget(self, check: str) -> None:
        """A check removed from the config: its series go (Prometheus marks them stale)."""
        self.durations.pop(check, None)
        self.runs.pop((check, True), None)
        self.runs.pop((check, False), None)


@dataclass(slots=True)
class EngineTally:
    """What the engine counts: incidents opened per severity, heals per (kind, target, ok)."""

    opened: dict[str, int] = field(default_factory=dict)
    heals: dict[tuple[str, str, bool], int] = field(default_factory=dict)

    def incident_opened(self, severity: str) -> None:
        self.opened[severity] = self.opened.get(severity, 0) + 1

    def healed(self, kind: str, target: str, ok: bool) -> None:
        key = (kind, target, ok)
        self.heals[key] = self.heals.get(key, 0) + 1


@dataclass(slots=True)
class DeliveryTally:
    """What the outbox counts: recorded outcomes per (notifier, delivered|retry|dead)."""

    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)

    def recorded(self, notifier: str, outcome: str) -> None:
        key = (notifier, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


_reloads: dict[str, int] = {}
_reloads_lock = threading.Lock()  # a reload may be counted from a signal handler's thread


def record_reload(result: str) -> None:
    """Count one config reload by its result (``ok``, ``failed``, …): ``lifeguard_config_reloads_total``."""
    with _reloads_lock:
        _reloads[result] = _reloads.get(result, 0) + 1


def reloads() -> dict[str, int]:
    with _reloads_lock:
        return dict(_reloads)


@dataclass(frozen=True, slots=True)
class CheckFacts:
    """One check as a scrape sees it: ``up`` is None until its first result (this run or restored)."""

    name: str
    type: str
    up: bool | None
    warning: bool = False  # the last result passed with a warning


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything ``/metrics`` shows, copied on the event loop so formatting can run elsewhere."""

    version: str
    checks: list[CheckFacts]
    runs: dict[tuple[str, bool], int]
    durations: dict[str, Histogram]
    lag: Histogram
    incidents_open: dict[str, int]
    incidents_opened: dict[str, int]
    heals: dict[tuple[str, str, bool], int]
    heal_budget: dict[tuple[str, str], int]  # (kind, target) -> heals left in the window now
    deliveries: dict[tuple[str, str], int]
    pending: dict[str, int]
    reloads: dict[str, int]


def families(snap: Snapshot) -> Iterator[Any]:
    """The agent's own metric families from one snapshot (``prometheus_client`` must be importable)."""
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    info = GaugeMetricFamily("lifeguard_build_info", "The running agent's version; always 1.", labels=["version"])
    info.add_metric([snap.version], 1)
    yield info

    up = GaugeMetricFamily(
        "lifeguard_check_up",
        "1 if the check's last result passed, 0 if it failed; absent until its first result.",
        labels=["check", "type"],
    )
    for c in snap.checks:
        if c.up is not None:
            up.add_metric([c.name, c.type], 1.0 if c.up else 0.0)
    yield up

    warning = GaugeMetricFamily(
        "lifeguard_check_warning",
        "1 if the check's last result passed with a warning, else 0; absent until its first result.",
        labels=["check", "type"],
    )
    for c in snap.checks:
        if c.up is not None:
            warning.add_metric([c.name, c.type], 1.0 if c.up and c.warning else 0.0)
    yield warning

    duration = HistogramMetricFamily(
        "lifeguard_check_duration_seconds", "How long each check run took, its timeout included.", labels=["check"]
    )
    for name, hist in sorted(snap.durations.items()):
        duration.add_metric([name], hist.cumulative(), hist.total)
    yield duration

    runs = CounterMetricFamily("lifeguard_check_runs", "Check runs by result.", labels=["check", "result"])
    for (name, ok), count in sorted(snap.runs.items()):
        runs.add_metric([name, "ok" if ok else "fail"], count)
    yield runs

    lag = HistogramMetricFamily(
        "lifeguard_check_schedule_lag_seconds",
        "How late each check run started: actual start minus its planned slot (a free concurrency slot included).",
    )
    lag.add_metric([], snap.lag.cumulative(), snap.lag.total)
    yield lag

    open_ = GaugeMetricFamily("lifeguard_incidents_open", "Incidents open now.", labels=["severity"])
    for severity, count in sorted(snap.incidents_open.items()):
        open_.add_metric([severity], count)
    yield open_

    opened = CounterMetricFamily("lifeguard_incidents_opened", "Incidents opened by this run.", labels=["severity"])
    for severity, count in sorted(snap.incidents_opened.items()):
        opened.add_metric([severity], count)
    yield opened

    restarts = CounterMetricFamily(
        "lifeguard_heal_restarts", "Container restarts by whether the restart call succeeded.",
        labels=["container", "result"],
    )
    heals = CounterMetricFamily(
        "lifeguard_heals", "Heals of every kind by whether the heal call succeeded.",
        labels=["kind", "target", "result"],
    )
    for (kind, target, ok), count in sorted(snap.heals.items()):
        result = "succeeded" if ok else "failed"
        heals.add_metric([kind, target, result], count)
        if kind == "restart_container":
            restarts.add_metric([target, result], count)
    yield restarts
    yield heals

    budget = GaugeMetricFamily(
        "lifeguard_heal_budget_remaining", "Restarts the container's heal budget still allows in its window now.",
        labels=["container"],
    )
    for (kind, target), left in sorted(snap.heal_budget.items()):
        if kind == "restart_container":
            budget.add_metric([target], left)
    yield budget

    deliveries = CounterMetricFamily(
        "lifeguard_deliveries", "Delivery attempts by recorded outcome.", labels=["notifier", "result"]
    )
    for (notifier, result), count in sorted(snap.deliveries.items()):
        deliveries.add_metric([notifier, result], count)
    yield deliveries

    pending = GaugeMetricFamily(
        "lifeguard_outbox_pending", "Events waiting for delivery, per notifier (read from the store every 2 s).",
        labels=["notifier"],
    )
    for notifier, count in sorted(snap.pending.items()):
        pending.add_metric([notifier], count)
    yield pending

    reloads_ = CounterMetricFamily("lifeguard_config_reloads", "Config reloads by result.", labels=["result"])
    for result, count in sorted(snap.reloads.items()):
        reloads_.add_metric([result], count)
    yield reloads_


class _SnapshotCollector:
    """Yields the families of the snapshot the current scrape took (scrapes are serialised)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Any]:
        if self.snapshot is not None:
            yield from families(self.snapshot)

    def describe(self) -> list[Any]:  # registering it must not collect
        return []


class Exposition:
    """``/metrics``: a snapshot taken on the loop, formatted in a thread, through a private registry.

    ``take`` returns the snapshot; it runs on the event loop and must only copy.
    """

    def __init__(self, take: Callable[[], Snapshot]) -> None:
        self.take = take
        self._registry: CollectorRegistry | None = None
        self._collector = _SnapshotCollector()
        self._lock = asyncio.Lock()

    def _build(self) -> CollectorRegistry:
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
        from prometheus_client.registry import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(self._collector)
        return registry

    async def render(self) -> bytes:
        async with self._lock:
            self._collector.snapshot = self.take()
            try:
                return await asyncio.to_thread(self._format)
            finally:
                self._collector.snapshot = None

    def _format(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        if self._registry is None:
            self._registry = self._build()
        return generate_latest(self._registry)


__all__ = [
    "CONTENT_TYPE",
    "CheckFacts",
    "CheckTally",
    "DeliveryTally",
    "EngineTally",
    "Exposition",
    "Histogram",
    "Snapshot",
    "families",
    "record_reload",
    "reloads",
]
