"""Prometheus metrics: tallies the components keep, and ``/metrics`` built from them at scrape time.

The agent checks a thousand targets a second, so nothing here touches a Prometheus object per
check run: the scheduler, the engine and the outbox each own a tally of plain dicts and small
histograms (``CheckTally``, ``EngineTally``, ``DeliveryTally``: one dict increment, one bisect),
and everything else — whether a check is up, open incidents, heal budgets, pending deliveries — is
read from the components' own state when Prometheus asks. A scrape copies that state on the event
loop (a snapshot, cheap), then writes the text format straight from it, a slice of about 128 KiB at
a time with the event loop free between slices, into the response as it goes: no sample object
per series and never the whole answer in memory (at 3,000 checks it is 3.3 MB of text, 51,000
lines; ``prometheus_client`` building it cost ~30 MB at the peak, most of it kept by the
allocator afterwards). ``text_chunks`` writes exactly what ``prometheus_client``'s
``generate_latest`` makes of ``families`` (the tests compare them byte for byte); the process,
GC and platform figures still come from ``prometheus_client``'s own collectors, imported at the
first scrape, so an agent nobody scrapes never loads it.

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
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

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


# -- the text format, written straight from a snapshot ------------------------------------------
# (name, help, type, label names) of every family ``families`` yields, in its order; a counter's
# name here is its family's, ``_total`` is added as Prometheus's text format does.
_INFO = ("lifeguard_build_info", "The running agent's version; always 1.", "gauge", ("version",))
_UP = ("lifeguard_check_up", "1 if the check's last result passed, 0 if it failed; absent until its first result.",
       "gauge", ("check", "type"))
_WARNING = ("lifeguard_check_warning",
            "1 if the check's last result passed with a warning, else 0; absent until its first result.",
            "gauge", ("check", "type"))
_DURATION = ("lifeguard_check_duration_seconds", "How long each check run took, its timeout included.",
             "histogram", ("check",))
_RUNS = ("lifeguard_check_runs", "Check runs by result.", "counter", ("check", "result"))
_LAG = ("lifeguard_check_schedule_lag_seconds",
        "How late each check run started: actual start minus its planned slot (a free concurrency slot included).",
        "histogram", ())
_OPEN = ("lifeguard_incidents_open", "Incidents open now.", "gauge", ("severity",))
_OPENED = ("lifeguard_incidents_opened", "Incidents opened by this run.", "counter", ("severity",))
_RESTARTS = ("lifeguard_heal_restarts", "Container restarts by whether the restart call succeeded.", "counter",
             ("container", "result"))
_HEALS = ("lifeguard_heals", "Heals of every kind by whether the heal call succeeded.", "counter",
          ("kind", "target", "result"))
_BUDGET = ("lifeguard_heal_budget_remaining", "Restarts the container's heal budget still allows in its window now.",
           "gauge", ("container",))
_DELIVERIES = ("lifeguard_deliveries", "Delivery attempts by recorded outcome.", "counter", ("notifier", "result"))
_PENDING = ("lifeguard_outbox_pending",
            "Events waiting for delivery, per notifier (read from the store every 2 s).", "gauge", ("notifier",))
_RELOADS = ("lifeguard_config_reloads", "Config reloads by result.", "counter", ("result",))

Spec = tuple[str, str, str, tuple[str, ...]]
Rows = Iterable[tuple[tuple[str, ...], float]]


def _family(spec: Spec, rows: Rows) -> Any:
    """``spec``'s family with ``rows`` (label values, value) as ``prometheus_client`` builds it."""
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

    name, doc, kind, labels = spec
    family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=list(labels))
    for values, value in rows:
        family.add_metric(list(values), value)
    return family


def _histogram_family(spec: Spec, rows: Iterable[tuple[tuple[str, ...], Histogram]]) -> Any:
    from prometheus_client.metrics_core import HistogramMetricFamily

    name, doc, _, labels = spec
    family = HistogramMetricFamily(name, doc, labels=list(labels) if labels else None)
    for values, hist in rows:
        family.add_metric(list(values), hist.cumulative(), hist.total)
    return family


def _up_rows(snap: Snapshot) -> Rows:
    return (((c.name, c.type), 1.0 if c.up else 0.0) for c in snap.checks if c.up is not None)


def _warning_rows(snap: Snapshot) -> Rows:
    return (((c.name, c.type), 1.0 if c.up and c.warning else 0.0) for c in snap.checks if c.up is not None)


def _runs_rows(snap: Snapshot) -> Rows:
    return (((name, "ok" if ok else "fail"), snap.runs[(name, ok)]) for name, ok in sorted(snap.runs))


def _small_rows(snap: Snapshot) -> list[tuple[Spec, Rows]]:
    """The families after the per-check ones (and the lag histogram), with their rows."""
    heals = sorted(snap.heals.items())
    return [
        (_OPEN, (((s,), n) for s, n in sorted(snap.incidents_open.items()))),
        (_OPENED, (((s,), n) for s, n in sorted(snap.incidents_opened.items()))),
        (_RESTARTS, (((t, "succeeded" if ok else "failed"), n) for (k, t, ok), n in heals if k == "restart_container")),
        (_HEALS, (((k, t, "succeeded" if ok else "failed"), n) for (k, t, ok), n in heals)),
        (_BUDGET, (((t,), n) for (k, t), n in sorted(snap.heal_budget.items()) if k == "restart_container")),
        (_DELIVERIES, (((nf, r), n) for (nf, r), n in sorted(snap.deliveries.items()))),
        (_PENDING, (((nf,), n) for nf, n in sorted(snap.pending.items()))),
        (_RELOADS, (((r,), n) for r, n in sorted(snap.reloads.items()))),
    ]


def families(snap: Snapshot) -> Iterator[Any]:
    """The agent's own metric families from one snapshot, as ``prometheus_client`` objects (one
    sample object per series: what ``text_chunks`` writes without them)."""
    yield _family(_INFO, [((snap.version,), 1)])
    yield _family(_UP, _up_rows(snap))
    yield _family(_WARNING, _warning_rows(snap))
    yield _histogram_family(_DURATION, (((name,), snap.durations[name]) for name in sorted(snap.durations)))
    yield _family(_RUNS, _runs_rows(snap))
    yield _histogram_family(_LAG, [((), snap.lag)])
    for spec, rows in _small_rows(snap):
        yield _family(spec, rows)


def _escape(value: str) -> str:
    """A label value as the text format quotes it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def _head(spec: Spec) -> str:
    name, doc, kind, _ = spec
    if kind == "counter":
        name += "_total"
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


CHUNK = 128 * 1024
"""Characters of text written between two turns of the event loop."""


class _Text:
    """Lines gathered into slices of about ``CHUNK`` characters."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> str | None:
        """Add ``text``; the slice gathered when it is full enough, else None."""
        self.parts.append(text)
        self.size += len(text)
        if self.size < CHUNK:
            return None
        return self.take()

    def take(self) -> str:
        out = "".join(self.parts)
        self.parts.clear()
        self.size = 0
        return out


def text_chunks(snap: Snapshot) -> Iterator[str]:
    """The agent's families in the text format, in slices: what ``generate_latest`` makes of
    ``families(snap)``, byte for byte, without building a sample object per series."""
    from prometheus_client.utils import floatToGoString

    num = cast(Callable[[float], str], floatToGoString)  # Go's spelling of a float, as generate_latest's
    text = _Text()

    def gauge_or_counter(spec: Spec, rows: Rows) -> Iterator[str]:
        name, _, kind, labels = spec
        sample = name + "_total" if kind == "counter" else name
        order = sorted(range(len(labels)), key=labels.__getitem__)  # the format sorts labels by name
        if (out := text.add(_head(spec))) is not None:
            yield out
        for values, value in rows:
            inner = ",".join(f'{labels[i]}="{_escape(values[i])}"' for i in order)
            line = f"{sample}{{{inner}}} {num(value)}\n" if labels else f"{sample} {num(value)}\n"
            if (out := text.add(line)) is not None:
                yield out

    les = [*(_le(b) for b in DURATION_BUCKETS), "+Inf"]

    def histogram(spec: Spec, rows: Iterable[tuple[str, Histogram]]) -> Iterator[str]:
        """Rows of (label value, histogram): the family's one label (``check``, which sorts before
        ``le``), or none (``_LAG``: the value is not used)."""
        name, _, _, labels = spec
        if (out := text.add(_head(spec))) is not None:
            yield out
        for value, hist in rows:
            bounds = les if hist.bounds is DURATION_BUCKETS else [*(_le(b) for b in hist.bounds), "+Inf"]
            label = f'{labels[0]}="{_escape(value)}"' if labels else ""
            bucket = f"{name}_bucket{{{label},le=" if labels else f"{name}_bucket{{le="
            running = 0
            lines = []
            for le, count in zip(bounds, hist.counts, strict=True):
                running += count
                lines.append(f'{bucket}"{le}"}} {num(running)}\n')
            tail = f"{{{label}}}" if labels else ""
            lines.append(f"{name}_count{tail} {num(running)}\n{name}_sum{tail} {num(hist.total)}\n")
            if (out := text.add("".join(lines))) is not None:
                yield out

    yield from gauge_or_counter(_INFO, [((snap.version,), 1)])
    yield from gauge_or_counter(_UP, _up_rows(snap))
    yield from gauge_or_counter(_WARNING, _warning_rows(snap))
    yield from histogram(_DURATION, ((name, snap.durations[name]) for name in sorted(snap.durations)))
    yield from gauge_or_counter(_RUNS, _runs_rows(snap))
    yield from histogram(_LAG, [("", snap.lag)])
    for spec, rows in _small_rows(snap):
        yield from gauge_or_counter(spec, rows)
    if text.parts:
        yield text.take()


Write = Callable[[bytes], Awaitable[None]]


class Exposition:
    """``/metrics``: a snapshot taken on the loop, written out a slice at a time.

    ``take`` returns the snapshot; it runs on the event loop and must only copy. Scrapes are
    served one after the other.
    """

    def __init__(self, take: Callable[[], Snapshot]) -> None:
        self.take = take
        self._registry: CollectorRegistry | None = None
        self._lock = asyncio.Lock()

    def _process_text(self) -> bytes:
        """The process, GC and platform families of ``prometheus_client``'s own collectors (small)."""
        from prometheus_client.exposition import generate_latest

        if self._registry is None:
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
            from prometheus_client.registry import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)
            PlatformCollector(registry=registry)
            self._registry = registry
        return generate_latest(self._registry)

    async def write(self, out: Write) -> None:
        """The whole exposition to ``out``, slice by slice, the event loop free between slices."""
        async with self._lock:
            snap = self.take()
            await out(self._process_text())
            for chunk in text_chunks(snap):
                await asyncio.sleep(0)
                await out(chunk.encode())

    async def render(self) -> bytes:
        """The whole exposition at once (for tests and small agents)."""
        parts: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            parts.append(chunk)

        await self.write(keep)
        return b"".join(parts)


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
    "text_chunks",
    "record_reload",
    "reloads",
]
