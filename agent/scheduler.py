"""Runs every check on its own interval, on a monotonic schedule that does not drift.

Each check's first run comes within a second of the start, then a random phase spreads the load:
runs happen at ``start + k * interval``; a run that overran its slot skips the missed slots rather
than bunching up. A semaphore caps checks in flight. The check's own ``run()`` enforces its
timeout, so a hanging target occupies one slot of one check, never another check's time.

One dispatcher for all checks, not a task per check: the checks waiting for their next slot sit in
a heap (a few dozen bytes each), one timer is armed for the earliest, and a run's task exists only
while the run does. At 3,000 checks that is ~5 MB less than 3,000 sleeping tasks with their
futures and timers, for the same work per run (a task then, a timer and a future before).
A reload starts and stops single checks (``add``/``remove``); the others are not touched.
``run_now`` (Docker's events ask for it) runs one check at once, within the same concurrency cap;
the schedule is unchanged (the next planned run is still at ``start + k * interval``) and calls that
come while a run is under way make one more run after it, not one each.
Each run is counted in ``tally`` (runs, durations, and how late it started: the moment it got a
slot minus the slot it was planned for), plain dict work, read by ``/metrics`` when scraped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import structlog

from agent.metrics import CheckTally
from checks.base import AnyCheck, CheckResult

log = structlog.get_logger("lifeguard.scheduler")

FIRST_RUN_WITHIN = 1.0  # seconds from the start to each check's first run

Spawn = Callable[[str, Coroutine[Any, Any, None]], "asyncio.Task[Any]"]


def next_slot(start: float, interval: float, now: float) -> float:
    """The first slot ``start + k*interval`` strictly after ``now`` (k >= 1)."""
    k = max(1, int((now - start) // interval) + 1)
    return start + k * interval


def first_slots(now: float, interval: float, draw: Callable[[], float]) -> tuple[float, float]:
    """(the schedule's start, the first run) of a check started at ``now``; ``draw`` gives [0, 1).

    The schedule's phase is spread over up to 5 s (or the interval) so checks do not all run in the
    same instant, but the first run comes within ``FIRST_RUN_WITHIN`` of the start, so an agent
    (re)started checks everything at once; later slots are ``start + k * interval``.
    """
    start = now + draw() * min(interval, 5.0)
    if start - now <= FIRST_RUN_WITHIN:
        return start, start
    return start, now + draw() * FIRST_RUN_WITHIN


class _Entry:
    """One scheduled check: its grid, its next slot, and its run while one is under way."""

    __slots__ = ("check", "start", "interval", "token", "rung", "task")

    def __init__(self, check: AnyCheck, start: float, interval: float) -> None:
        self.check = check
        self.start = start
        self.interval = interval
        self.token = -1  # the sequence number of its live heap item; -1: none (running, rung or removed)
        self.rung = False  # run_now during a run: one more run right after it
        self.task: asyncio.Task[None] | None = None  # the run under way


class Scheduler:
    def __init__(
        self,
        checks: Iterable[AnyCheck],
        on_result: Callable[[CheckResult], Awaitable[None]],
        *,
        max_concurrent: int = 100,
        jitter: bool = True,
    ) -> None:
        self.checks = list(checks)
        self.on_result = on_result
        self._slots = asyncio.Semaphore(max_concurrent)
        self._draw: Callable[[], float] = random.random if jitter else (lambda: 0.0)
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, _Entry]] = []  # (slot, sequence, entry); stale items are skipped
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed = float("inf")  # when the timer fires
        self._crashed: asyncio.Future[None] | None = None
        self._spawn: Spawn = lambda name, coro: asyncio.create_task(coro, name=name)
        self.running = 0
        self.tally = CheckTally()

    def start(self, spawn: Spawn | None = None) -> None:
        """Schedule every check. ``spawn(name, coro)`` (a supervisor's) runs one task that ends
        with the error of a run that crashed, so the supervisor sees it."""
        if spawn is not None:
            self._spawn = spawn
        self._crashed = asyncio.get_running_loop().create_future()
        self._spawn("scheduler", self._watch(self._crashed))
        for check in self.checks:
            self._schedule(check)

    def add(self, check: AnyCheck) -> None:
        """Start scheduling one more check (a reload added it, or changed it)."""
        self.checks.append(check)
        self._schedule(check)

    async def remove(self, name: str) -> None:
        """Stop scheduling one check; a run under way is cancelled (its result is not reported)."""
        self.checks = [c for c in self.checks if c.name != name]
        entry = self._entries.pop(name, None)
        if entry is None:
            return
        entry.token = -1
        if entry.task is not None:
            await _cancelled([entry.task])

    def run_now(self, name: str) -> bool:
        """Run check ``name`` as soon as a slot is free, off its schedule; False if it is not scheduled."""
        entry = self._entries.get(name)
        if entry is None:
            return False
        if entry.task is not None:
            entry.rung = True  # one more run when this one is over
        else:
            entry.token = -1  # its planned slot's heap item is stale now
            self._launch(entry, None)
        return True

    def limit(self, max_concurrent: int) -> None:
        """A new cap on checks in flight; runs under way finish under the old one."""
        self._slots = asyncio.Semaphore(max_concurrent)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._armed = None, float("inf")
        entries, self._entries = list(self._entries.values()), {}
        self._heap.clear()
        await _cancelled([e.task for e in entries if e.task is not None])
        if self._crashed is not None and not self._crashed.done():
            self._crashed.set_result(None)

    # -- the dispatcher ----------------------------------------------------------------------
    def _schedule(self, check: AnyCheck) -> None:
        interval = check.config.interval
        start, first = first_slots(time.monotonic(), interval, self._draw)
        entry = self._entries[check.name] = _Entry(check, start, interval)
        self._plan(entry, first)

    def _plan(self, entry: _Entry, slot: float) -> None:
        """Put ``entry`` in the heap for ``slot``; the timer is moved up if it is now the earliest."""
        seq = next(self._seq)
        entry.token = seq
        heapq.heappush(self._heap, (slot, seq, entry))
        if slot < self._armed:
            self._arm(slot)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = when
        self._timer = asyncio.get_running_loop().call_at(when, self._due)

    def _due(self) -> None:
        """The timer: start the run of every check whose slot has come, then wait for the next."""
        self._timer, self._armed = None, float("inf")
        heap = self._heap
        now = time.monotonic()
        while heap:
            slot, seq, entry = heap[0]
            if slot > now:
                self._arm(slot)
                return
            heapq.heappop(heap)
            if entry.token == seq:  # else stale: woken by run_now, or removed
                entry.token = -1
                self._launch(entry, slot)

    def _launch(self, entry: _Entry, planned: float | None) -> None:
        entry.rung = False
        entry.task = asyncio.get_running_loop().create_task(self._run(entry, planned))

    async def _run(self, entry: _Entry, planned: float | None) -> None:
        try:
            await self.run_once(entry.check, planned)
        except Exception as exc:  # a bug: the supervisor hears of it through the watch task
            log.error("scheduler.run_crashed", check=entry.check.name, error=str(exc))
            if self._crashed is not None and not self._crashed.done():
                self._crashed.set_exception(exc)
            return
        finally:
            entry.task = None
        if self._entries.get(entry.check.name) is not entry:
            return  # removed (or replaced) while it ran
        if entry.rung:
            self._launch(entry, None)
        else:
            self._plan(entry, next_slot(entry.start, entry.interval, time.monotonic()))

    @staticmethod
    async def _watch(crashed: asyncio.Future[None]) -> None:
        await crashed

    async def run_once(self, check: AnyCheck, planned: float | None = None) -> CheckResult:
        """One run; ``planned`` is the monotonic time it was due, if it was scheduled."""
        async with self._slots:
            if planned is not None:
                self.tally.late(time.monotonic() - planned)
            self.running += 1
            try:
                result = await check.run()
            finally:
                self.running -= 1
        self.tally.ran(result.check, result.ok, result.latency)
        try:
            await self.on_result(result)
        except asyncio.CancelledError:
            raise
        except Exception:  # the engine failing on one result must not stop this check
            log.exception("engine.error", check=check.name)
        return result


async def _cancelled(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they are over. A cancel that arrives as an awaited call
    completes can be swallowed (``asyncio.wait_for`` on Python 3.11 returns the result instead):
    such a task is cancelled again rather than waited for until its next run."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    await asyncio.gather(*tasks, return_exceptions=True)
