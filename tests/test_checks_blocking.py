"""A check's blocking reads in a thread of its own: a stuck read ties up that thread only, and says so."""

from __future__ import annotations

import asyncio
import threading

import pytest

from checks.blocking import OwnThread, StillRunning


def join(name: str) -> None:
    for thread in threading.enumerate():
        if thread.name == name:
            thread.join(5)
            assert not thread.is_alive()


async def test_a_call_returns_its_value_or_raises_its_error() -> None:
    worker = OwnThread("t1")
    assert await worker.call(lambda: threading.current_thread().name) == "lifeguard-check-t1"
    with pytest.raises(ZeroDivisionError):
        await worker.call(lambda: 1 // 0)


async def test_a_stuck_call_times_out_and_later_runs_fail_at_once_until_it_returns() -> None:
    worker = OwnThread("t2")
    release = threading.Event()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await worker.call(release.wait)
    assert [t for t in threading.enumerate() if t.name == "lifeguard-check-t2"][0].daemon  # never holds up the exit
    with pytest.raises(StillRunning, match="the previous run has not finished"):
        await worker.call(lambda: "never started")
    release.set()
    join("lifeguard-check-t2")
    assert await worker.call(lambda: "runs again") == "runs again"
