"""One lock per name (a check's), that costs nothing for a name nobody holds.

The engine serialises everything that changes one check's incident — its results, the commands of
the people running the incident, a heal's outcome, a reload replacing or removing the check —
under that check's lock: each of them awaits the store (a write in a thread) in the middle, so
without it two could interleave. An ``asyncio.Lock`` per check would be there, always, for
thousands of checks that are almost never contended. Here a name is in the table only while it
is held, with the futures of whoever waits for it; the lock passes straight from a holder to the
first waiter (first come, first served), never free in between.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class KeyedLock:
    """``async with locks(name):`` — one holder per name at a time, the others in order of arrival."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, deque[asyncio.Future[None]] | None] = {}  # held name -> its waiters

    def __call__(self, name: str) -> _Hold:
        return _Hold(self, name)

    def locked(self, name: str) -> bool:
        return name in self._held

    def __len__(self) -> int:
        """Names held now."""
        return len(self._held)

    async def acquire(self, name: str) -> None:
        held = self._held
        if name not in held:
            held[name] = None
            return
        waiters = held[name]
        if waiters is None:
            waiters = held[name] = deque()
        fut = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut  # its result is set by the holder's release: the lock is ours
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(name)  # handed over as it was cancelled: pass it on
            elif fut in waiters:  # a release may have passed over it already
                waiters.remove(fut)
            raise

    def release(self, name: str) -> None:
        waiters = self._held[name]
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        del self._held[name]


class _Hold:
    __slots__ = ("_locks", "_name")

    def __init__(self, locks: KeyedLock, name: str) -> None:
        self._locks = locks
        self._name = name

    async def __aenter__(self) -> None:
        await self._locks.acquire(self._name)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._locks.release(self._name)
