"""The supervisor: ordered start, reverse bounded stop, interrupted and failed starts, crashes."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from agent.lifecycle import Supervisor


class Part:
    """A component that writes what happens to it into a shared journal."""

    def __init__(
        self,
        name: str,
        journal: list[str],
        *,
        start_error: Exception | None = None,
        start_hangs: bool = False,
        stop_error: Exception | None = None,
        stop_hangs: bool = False,
    ) -> None:
        self.name = name
        self.journal = journal
        self.start_error = start_error
        self.start_hangs = start_hangs
        self.stop_error = stop_error
        self.stop_hangs = stop_hangs
        self.starting = asyncio.Event()

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        self.starting.set()
        if self.start_hangs:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.journal.append(f"cancelled {self.name}")
                raise
        if self.start_error is not None:
            raise self.start_error

    async def stop(self, grace: float) -> None:
        self.journal.append(f"stop {self.name}")
        if self.stop_hangs:
            await asyncio.Event().wait()
        if self.stop_error is not None:
            raise self.stop_error


def supervised(*parts: Part, grace: float = 1.0) -> Supervisor:
    supervisor = Supervisor(stop_slack=0.05)
    for part in parts:
        supervisor.add(part, grace)
    return supervisor


async def test_components_start_in_order_and_stop_in_reverse() -> None:
    journal: list[str] = []
    supervisor = supervised(Part("store", journal), Part("api", journal), Part("scheduler", journal))
    assert await supervisor.start() is True
    assert supervisor.started == ["store", "api", "scheduler"]
    await supervisor.stop()
    assert journal == ["start store", "start api", "start scheduler", "stop scheduler", "stop api", "stop store"]
    assert supervisor.started == [] and supervisor.failure is None


async def test_a_failed_start_raises_and_stop_stops_only_what_started() -> None:
    journal: list[str] = []
    supervisor = supervised(
        Part("store", journal), Part("api", journal, start_error=OSError("address in use")), Part("outbox", journal)
    )
    with capture_logs() as logs, pytest.raises(OSError, match="address in use"):
        await supervisor.start()
    await supervisor.stop()
    assert journal == ["start store", "start api", "stop store"]
    assert supervisor.failure == "api failed to start: address in use"
    assert [e["component"] for e in logs if e["event"] == "lifecycle.start_failed"] == ["api"]


async def test_a_stop_requested_during_start_cancels_the_start_under_way() -> None:
    journal: list[str] = []
    slow = Part("docker", journal, start_hangs=True)
    supervisor = supervised(Part("store", journal), slow, Part("api", journal))
    starting = asyncio.create_task(supervisor.start())
    await slow.starting.wait()
    supervisor.request_stop("signal SIGTERM")
    assert await starting is False
    await supervisor.stop()
    assert journal == ["start store", "start docker", "cancelled docker", "stop store"]
    assert supervisor.stop_reason == "signal SIGTERM" and supervisor.failure is None


async def test_a_stop_requested_before_start_starts_nothing() -> None:
    journal: list[str] = []
    supervisor = supervised(Part("store", journal))
    supervisor.request_stop("signal SIGINT")
    assert await supervisor.start() is False
    await supervisor.stop()
    assert journal == []


async def test_a_crashed_task_is_logged_and_shuts_everything_down_in_order() -> None:
    journal: list[str] = []
    supervisor = supervised(Part("store", journal), Part("upkeep", journal))
    assert await supervisor.start()
    go = asyncio.Event()

    async def flush_loop() -> None:
        await go.wait()
        raise RuntimeError("disk I/O error")

    with capture_logs() as logs:
        supervisor.spawn("upkeep:flush", flush_loop())
        go.set()
        await asyncio.wait_for(supervisor.wait(), 5)
    assert supervisor.failure == "task upkeep:flush crashed: disk I/O error"
    assert supervisor.stop_reason == "task upkeep:flush crashed"
    crashed = [e for e in logs if e["event"] == "lifecycle.task_crashed"]
    assert crashed[0]["task"] == "upkeep:flush" and crashed[0]["log_level"] == "error"
    await supervisor.stop()
    assert journal[-2:] == ["stop upkeep", "stop store"]


async def test_a_task_that_is_cancelled_or_returns_is_not_a_crash() -> None:
    supervisor = supervised()
    assert await supervisor.start()
    done = supervisor.spawn("returns", asyncio.sleep(0))
    cancelled = supervisor.spawn("cancelled", asyncio.Event().wait())
    await done
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert not supervisor.stop_requested and supervisor.failure is None


async def test_stop_is_idempotent_and_safe_to_call_concurrently() -> None:
    journal: list[str] = []
    supervisor = supervised(Part("store", journal), Part("api", journal))
    await supervisor.start()
    await asyncio.gather(supervisor.stop(), supervisor.stop())
    await supervisor.stop()
    assert journal == ["start store", "start api", "stop api", "stop store"]


async def test_a_stop_that_overruns_its_grace_is_cut_short_and_the_rest_still_stop() -> None:
    journal: list[str] = []
    supervisor = supervised(Part("store", journal), Part("outbox", journal, stop_hangs=True), grace=0.05)
    await supervisor.start()
    with capture_logs() as logs:
        await asyncio.wait_for(supervisor.stop(), 5)
    assert journal[-2:] == ["stop outbox", "stop store"]
    assert [(e["component"], e["grace_s"]) for e in logs if e["event"] == "lifecycle.stop_overran"] == [("outbox", 0.05)]


async def test_a_stop_that_raises_is_logged_and_the_rest_still_stop() -> None:
    journal: list[str] = []
    supervisor = supervised(Part("store", journal), Part("api", journal, stop_error=RuntimeError("boom")))
    await supervisor.start()
    with capture_logs() as logs:
        await supervisor.stop()
    assert journal[-2:] == ["stop api", "stop store"]
    assert [e["component"] for e in logs if e["event"] == "lifecycle.stop_failed"] == ["api"]


async def test_tasks_left_running_are_cancelled_at_stop() -> None:
    supervisor = supervised()
    await supervisor.start()
    forgotten = supervisor.spawn("forgotten", asyncio.Event().wait())
    await supervisor.stop()
    assert forgotten.cancelled()
