"""Runs every check on its own interval, on a monotonic schedule that does not drift.

Each check has its own task: its first run comes within a second of the start, then a random
phase spreads the load: runs happen at ``start + k * interval``; a run that overran its slot
skips the missed slots rather than bunching up. A semaphore caps checks in flight. The check's
own ``run()`` enforces its timeout, so a hanging target occupies one slot of one check, never another check's time.
A reload starts and stops single checks (``add``/``remove``); the others' tasks are not touched.
``run_now`` (Docker's events ask for it) wakes one check's task for a run at once, within the same
concurrency cap; the schedule is unchanged (the next planned run is still at ``start + k * interval``)
and calls that come while a run is under way make one more run after it, not one each.
Each run is counted in ``tally`` (runs, durations, and how late it started: the moment it got a
slot minus the slot it was planned for), plain dict work, read by ``/metrics`` when scraped.
"""

from __future__ import annotations

import asyncio
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


class _Alarm:
    """One check's sleep until its next slot, cut short by ``ring`` (``run_now``).

    One future and one timer per sleep, as ``asyncio.sleep`` costs, and no exception: at thousands
    of checks a second a timeout that cancels a wait would cost a raised and caught error each time.
    """

    __slots__ = ("_fut", "rung")

    def __init__(self) -> None:
        self.rung = False  # rung since the last run began: the next sleep returns at once
        self._fut: asyncio.Future[bool] | None = None

    def ring(self) -> None:
        self.rung = True
        if self._fut is not None and not self._fut.done():
            self._fut.set_result(False)

    async def sleep_until(self, moment: float) -> bool:
        """Until the monotonic ``moment`` (the loop's clock): True when it came, False when rung first."""
        if self.rung:
            return False
        loop = asyncio.get_running_loop()
        fut = self._fut = loop.create_future()
        timer = loop.call_at(moment, _come, fut)
        try:
            came: bool = await fut
        finally:
            timer.cancel()
            self._fut = None
        return came


def _come(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(True)


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
        self._jitter = jitter
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, _Alarm] = {}
        self._spawn: Spawn = lambda name, coro: asyncio.create_task(coro, name=name)
        self.running = 0
        self.tally = CheckTally()

    def start(self, spawn: Spawn | None = None) -> None:
        """One task per check, made by ``spawn(name, coro)`` (a supervisor's, so a crash is seen)."""
        if spawn is not None:
            self._spawn = spawn
        for check in self.checks:
            self._tasks[check.name] = self._spawn(f"check:{check.name}", self._loop(check))

    def add(self, check: AnyCheck) -> None:
        """Start scheduling one more check (a reload added it, or changed it)."""
        self.checks.append(check)
        self._tasks[check.name] = self._spawn(f"check:{check.name}", self._loop(check))

    async def remove(self, name: str) -> None:
        """Stop scheduling one check; a run under way is cancelled (its result is not reported)."""
        self.checks = [c for c in self.checks if c.name != name]
        task = self._tasks.pop(name, None)
        self._wake.pop(name, None)
        if task is not None:
            await _cancelled([task])

    def run_now(self, name: str) -> bool:
        """Run check ``name`` as soon as a slot is free, off its schedule; False if it is not scheduled."""
        wake = self._wake.get(name)
        if wake is None or name not in self._tasks:
            return False
        wake.ring()
        return True

    def task(self, name: str) -> asyncio.Task[None] | None:
        """The task that runs check ``name`` (the same one for as long as the check is unchanged)."""
        return self._tasks.get(name)

    def limit(self, max_concurrent: int) -> None:
        """A new cap on checks in flight; runs under way finish under the old one."""
        self._slots = asyncio.Semaphore(max_concurrent)

    async def stop(self) -> None:
        await _cancelled(list(self._tasks.values()))
        self._tasks.clear()

    async def _loop(self, check: AnyCheck) -> None:
        interval = check.config.interval
        wake = self._wake[check.name] = _Alarm()
        start, first = first_slots(time.monotonic(), interval, random.random if self._jitter else lambda: 0.0)
        planned: float | None = first
        if not await wake.sleep_until(first):
            planned = None
        while True:
            wake.rung = False
            await self.run_once(check, planned)
            slot = next_slot(start, interval, time.monotonic())
            planned = slot if await wake.sleep_until(slot) else None

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
