"""The engine's per-check lock: exclusion per name, first come first served, nothing kept when free."""

from __future__ import annotations

import asyncio

import pytest

from agent.keyed_lock import KeyedLock


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_one_holder_per_name_served_in_order_and_nothing_kept_after() -> None:
    locks = KeyedLock()
    inside: list[str] = []
    order: list[str] = []
    gates = {who: asyncio.Event() for who in "abcx"}

    async def hold(who: str, name: str) -> None:
        async with locks(name):
            inside.append(who)
            order.append(who)
            await gates[who].wait()  # held across an await, as the engine holds it across a write
            inside.remove(who)

    tasks = [asyncio.create_task(hold(w, "web")) for w in "abc"]
    other = asyncio.create_task(hold("x", "db"))
    await settle()
    assert inside == ["a", "x"] and locks.locked("web") and locks.locked("db")  # another name is not blocked
    gates["x"].set()
    await other
    for who in "abc":
        gates[who].set()
        await settle()
    await asyncio.gather(*tasks)
    assert order == ["a", "x", "b", "c"] and inside == []
    assert len(locks) == 0 and not locks.locked("web")


async def test_a_waiter_cancelled_before_its_turn_is_skipped() -> None:
    locks = KeyedLock()
    got: list[str] = []
    release = asyncio.Event()

    async def hold(who: str) -> None:
        async with locks("web"):
            got.append(who)
            if who == "a":
                await release.wait()

    a = asyncio.create_task(hold("a"))
    await settle()
    b, c = asyncio.create_task(hold("b")), asyncio.create_task(hold("c"))
    await settle()
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    release.set()
    await asyncio.gather(a, c)
    assert got == ["a", "c"] and len(locks) == 0


async def test_a_waiter_cancelled_as_the_lock_reaches_it_passes_it_on() -> None:
    locks = KeyedLock()
    got: list[str] = []

    async def hold(who: str) -> None:
        async with locks("web"):
            got.append(who)

    await locks.acquire("web")  # held by the test
    b, c = asyncio.create_task(hold("b")), asyncio.create_task(hold("c"))
    await settle()
    locks.release("web")  # handed to b, which has not run yet ...
    b.cancel()  # ... and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await b
    await c
    assert got == ["c"] and len(locks) == 0
