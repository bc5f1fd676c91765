"""The scheduler: slots that do not drift, the cap on checks in flight, errors contained."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.scheduler import FIRST_RUN_WITHIN, Scheduler, first_slots, next_slot
from checks.base import Check, CheckContext, CheckResult, Outcome


@pytest.mark.parametrize(
    ("now", "expected"),
    [(100.0, 110.0), (105.0, 110.0), (110.0, 120.0), (137.5, 140.0), (99.0, 110.0)],
)
def test_next_slot_stays_on_the_grid(now: float, expected: float) -> None:
    assert next_slot(start=100.0, interval=10.0, now=now) == expected


@given(
    st.floats(0, 1e6), st.floats(0.01, 86400), st.floats(0, 0.999999), st.floats(0, 0.999999)
)
def test_the_first_run_comes_within_a_second_and_the_phase_within_five(now, interval, a, b) -> None:
    draws = iter([a, b])
    start, first = first_slots(now, interval, lambda: next(draws))
    assert now <= first <= now + FIRST_RUN_WITHIN and first <= start
    assert start - now <= min(interval, 5.0)
    assert next_slot(start, interval, first) > first  # the next run follows the first, on the grid


class Gate(Check):
    """A check that holds its slot until the test opens the gate."""

    type = "gate"

    def __init__(self, name: str, gate: asyncio.Event, running: list[str]) -> None:
        super().__init__(SimpleNamespace(name=name, timeout=5.0, interval=60.0), CheckContext())
        self.gate = gate
        self.running = running

    @property
    def target(self) -> str:
        return self.name

    async def probe(self) -> Outcome:
        self.running.append(self.name)
        await self.gate.wait()
        return Outcome(True, "ok")


async def test_checks_in_flight_are_capped() -> None:
    gate, running, results = asyncio.Event(), [], []

    async def on_result(r: CheckResult) -> None:
        results.append(r.check)

    checks = [Gate(f"c{i}", gate, running) for i in range(5)]
    scheduler = Scheduler(checks, on_result, max_concurrent=2, jitter=False)
    tasks = [asyncio.create_task(scheduler.run_once(c)) for c in checks]
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(running) == 2 and scheduler.running == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(results) == [f"c{i}" for i in range(5)] and scheduler.running == 0


async def test_an_engine_error_does_not_stop_the_check() -> None:
    gate = asyncio.Event()
    gate.set()

    async def broken(r: CheckResult) -> None:
        raise RuntimeError("boom")

    scheduler = Scheduler([], broken, jitter=False)
    result = await scheduler.run_once(Gate("c", gate, []))
    assert result.ok


async def test_a_probe_that_raises_is_a_failing_result() -> None:
    class Broken(Gate):
        async def probe(self) -> Outcome:
            raise ValueError("bad thing")

    result = await Broken("b", asyncio.Event(), []).run()
    assert not result.ok and result.message == "ValueError: bad thing"


async def test_a_probe_that_hangs_times_out() -> None:
    check = Gate("h", asyncio.Event(), [])
    check.config = SimpleNamespace(name="h", timeout=0.05, interval=1.0)
    result = await check.run()
    assert not result.ok and result.message == "timed out after 50ms"


class Counted(Gate):
    """Passes at once; each result is put on a queue the test awaits."""

    def __init__(self, name: str, interval: float = 3600.0) -> None:
        gate = asyncio.Event()
        gate.set()
        super().__init__(name, gate, [])
        self.config = SimpleNamespace(name=name, timeout=5.0, interval=interval)


async def test_run_now_runs_a_check_at_once_whatever_its_interval() -> None:
    results: asyncio.Queue[CheckResult] = asyncio.Queue()
    check = Counted("slow")
    scheduler = Scheduler([check], results.put, jitter=False)
    scheduler.start()
    try:
        await results.get()  # the first, planned run
        assert scheduler.run_now("slow")
        woken = await asyncio.wait_for(results.get(), 5)  # an hour's interval cannot explain it
        assert woken.check == "slow"
        assert sum(scheduler.tally.lag.counts) == 1  # a woken run is not counted as a late planned one
        assert not scheduler.run_now("unknown")
    finally:
        await scheduler.stop()


async def test_wake_ups_during_a_run_make_one_more_run_not_one_each() -> None:
    gate, running = asyncio.Event(), []
    results: asyncio.Queue[CheckResult] = asyncio.Queue()
    check = Gate("held", gate, running)
    check.config = SimpleNamespace(name="held", timeout=5.0, interval=3600.0)
    scheduler = Scheduler([check], results.put, jitter=False, max_concurrent=1)
    scheduler.start()
    try:
        while not running:
            await asyncio.sleep(0)
        for _ in range(3):
            scheduler.run_now("held")
        gate.set()
        await results.get()
        await asyncio.wait_for(results.get(), 5)  # the one extra run
        for _ in range(20):
            await asyncio.sleep(0)
        assert results.empty() and len(running) == 2
    finally:
        await scheduler.stop()



async def test_a_check_waiting_for_its_slot_holds_no_task() -> None:
    """One dispatcher for every check: between runs a check is a heap item, not a sleeping task."""
    results: asyncio.Queue[CheckResult] = asyncio.Queue()
    before = len(asyncio.all_tasks())
    scheduler = Scheduler([Counted(f"c{i}") for i in range(50)], results.put, jitter=False)
    scheduler.start()
    try:
        assert sorted([(await results.get()).check for _ in range(50)]) == sorted(f"c{i}" for i in range(50))
        for _ in range(5):  # the runs' tasks finish their last steps
            await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == before + 1  # the watch task only
        assert all(scheduler.run_now(f"c{i}") for i in range(50))
        assert len({(await results.get()).check for _ in range(50)}) == 50
    finally:
        await scheduler.stop()


async def test_removing_a_check_cancels_its_run_and_the_others_go_on() -> None:
    gate, running = asyncio.Event(), []
    results: asyncio.Queue[CheckResult] = asyncio.Queue()
    held = Gate("held", gate, running)
    held.config = SimpleNamespace(name="held", timeout=5.0, interval=3600.0)
    other = Counted("other")
    scheduler = Scheduler([held, other], results.put, jitter=False)
    scheduler.start()
    try:
        assert (await results.get()).check == "other"
        while not running:
            await asyncio.sleep(0)
        await scheduler.remove("held")  # returns once the run under way is cancelled
        assert not scheduler.run_now("held") and [c.name for c in scheduler.checks] == ["other"]
        gate.set()
        assert scheduler.run_now("other")
        assert (await results.get()).check == "other"
        for _ in range(20):
            await asyncio.sleep(0)
        assert results.empty() and running == ["held"]  # the cancelled run reported nothing
        scheduler.add(Counted("held"))  # a reload puts it back: scheduled afresh
        assert (await results.get()).check == "held"
    finally:
        await scheduler.stop()


async def test_a_run_that_crashes_ends_the_watch_task_with_its_error() -> None:
    """The supervisor owns the watch task: a bug in a run reaches it, as a crashed task did."""
    spawned: list[asyncio.Task[None]] = []

    def spawn(name: str, coro: Any) -> asyncio.Task[None]:
        spawned.append(asyncio.create_task(coro, name=name))
        return spawned[-1]

    async def broken(check: Any, planned: float | None = None) -> CheckResult:
        raise RuntimeError("bug in a run")

    scheduler = Scheduler([Counted("c")], lambda r: asyncio.sleep(0), jitter=False)
    scheduler.run_once = broken  # type: ignore[method-assign]
    scheduler.start(spawn)
    try:
        assert [t.get_name() for t in spawned] == ["scheduler"]
        with pytest.raises(RuntimeError, match="bug in a run"):
            await asyncio.wait_for(spawned[0], 5)
    finally:
        await scheduler.stop()


async def test_stop_cancels_runs_under_way_and_ends_the_watch_task() -> None:
    gate, running = asyncio.Event(), []
    check = Gate("held", gate, running)
    spawned: list[asyncio.Task[None]] = []

    def spawn(name: str, coro: Any) -> asyncio.Task[None]:
        spawned.append(asyncio.create_task(coro, name=name))
        return spawned[-1]

    scheduler = Scheduler([check], lambda r: asyncio.sleep(0), jitter=False)
    scheduler.start(spawn)
    while not running:
        await asyncio.sleep(0)
    await scheduler.stop()
    assert scheduler.running == 0 and not scheduler.run_now("held")
    await asyncio.wait_for(spawned[0], 5)  # ends cleanly: nothing crashed
