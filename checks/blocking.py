"""Blocking reads of a check (psutil, ``statvfs``) in a thread of the check's own, one run at a time.

Not the loop's default executor: a read stuck in the kernel (``statvfs`` on a hung network mount)
never returns, and each stuck run would take one of the few threads that ``/metrics`` and a
reload share. Here a stuck read holds one daemon thread of its own check, which the interpreter
does not wait for at exit; the check's run still times out as any other, and its next runs fail
at once, saying so, until the read comes back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StillRunning(Exception):
    """The previous run's blocking read has not returned yet."""


class OwnThread:
    """Runs one blocking call at a time in a fresh daemon thread, named after the check."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._running = False  # set on the loop, cleared by the thread when its call returns

    async def call(self, fn: Callable[[], T]) -> T:
        if self._running:
            raise StillRunning("the previous run has not finished (stuck reading /proc or a filesystem?)")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def settle(value: T | None, error: BaseException | None) -> None:
            if done.done():  # the run timed out or was cancelled meanwhile
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(value)  # type: ignore[arg-type]

        def work() -> None:
            value: T | None = None
            error: BaseException | None = None
            try:
                value = fn()
            except BaseException as exc:  # handed to the awaiting run, whatever it is
                error = exc
            finally:
                self._running = False
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:
                pass  # the loop has closed: nobody waits any more

        self._running = True
        try:
            threading.Thread(target=work, name=f"lifeguard-check-{self.name}", daemon=True).start()
        except BaseException:
            self._running = False
            raise
        return await done
