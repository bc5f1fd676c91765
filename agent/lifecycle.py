"""Starting and stopping the agent's parts in a stated order, with a bound on each stop.

A ``Supervisor`` starts its components in the order they were added and stops them in the
reverse order, each stop bounded by the grace it was added with, so "stop scheduling before
draining heals, drain before closing the database" is the order of a list rather than a
sequence of calls to keep in step by hand. A stop may be requested at any time — by a signal
while a slow part is still starting, or by a background task that crashed — and ends the start
early; only what finished starting is stopped. Every long-running task is spawned through the
supervisor, so none is unowned and none dies unnoticed: a task that raises is logged and
triggers the same orderly shutdown as SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

import structlog

log = structlog.get_logger("lifeguard.lifecycle")

STOP_SLACK = 1.0
"""Seconds a component's stop may run past its grace (cancelling and closing what is left)."""


class StartRefused(Exception):
    """A start that failed for a reason the operator must fix (``str()`` says what and how), not a
    bug: logged in one line without a traceback; ``exit_code`` is the process's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Component(Protocol):
    """A part of the agent with a start and a bounded stop.

    ``start`` either completes or leaves nothing behind (it is cancelled when a stop is
    requested meanwhile). ``stop`` is called only after ``start`` completed, at most once, and
    should finish within ``grace`` seconds: the supervisor cancels it a little after that.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


class Supervisor:
    """Starts components in order, stops them in reverse, owns every long-running task."""

    def __init__(self, *, stop_slack: float = STOP_SLACK) -> None:
        self.stop_slack = stop_slack
        self._components: list[tuple[Component, float]] = []
        self._started: list[tuple[Component, float]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested = asyncio.Event()
        self._stop_lock = asyncio.Lock()
        self.stop_reason: str | None = None
        self.failure: str | None = None
        """Why the agent is not stopping cleanly: a crashed task or a failed start; None if clean."""

    def add(self, component: Component, grace: float = 0.0) -> None:
        """Start ``component`` after every component added before it; stop it before them."""
        self._components.append((component, grace))

    @property
    def started(self) -> list[str]:
        """Names of the components started and not yet stopped, in start order."""
        return [c.name for c, _ in self._started]

    @property
    def stop_bound(self) -> float:
        """The longest a full stop can take: every component's grace and slack (the unit's
        ``TimeoutStopSec=`` is set above it)."""
        return sum(grace + self.stop_slack for _, grace in self._components)

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def request_stop(self, reason: str) -> None:
        """Ask for an orderly shutdown; safe to call from a signal handler, any number of times."""
        if not self._stop_requested.is_set():
            self.stop_reason = reason
            self._stop_requested.set()

    async def wait(self) -> None:
        """Until a stop is requested."""
        await self._stop_requested.wait()

    async def start(self) -> bool:
        """Start every component in order.

        Returns False when a stop was requested before all had started (the component starting
        at that moment is cancelled). Raises what a component's start raised; either way,
        ``stop()`` stops exactly the components that did start.
        """
        for component, grace in self._components[len(self._started) :]:
            if self.stop_requested:
                return False
            starting = asyncio.ensure_future(component.start())
            stop_wait = asyncio.ensure_future(self._stop_requested.wait())
            try:
                await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
                if not starting.done():
                    starting.cancel()
                    await asyncio.gather(starting, return_exceptions=True)
            if starting.cancelled():
                log.info("lifecycle.start_interrupted", component=component.name, reason=self.stop_reason)
                return False
            error = starting.exception()
            if error is not None:
                self.failure = self.failure or f"{component.name} failed to start: {error}"
                trace = None if isinstance(error, StartRefused) else error
                log.error("lifecycle.start_failed", component=component.name, error=str(error), exc_info=trace)
                raise error
            self._started.append((component, grace))
            log.debug("lifecycle.started", component=component.name)
        return not self.stop_requested

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as an owned task; if it raises, log it and shut down in order."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        log.error("lifecycle.task_crashed", task=task.get_name(), error=str(error), exc_info=error)
        self.failure = self.failure or f"task {task.get_name()} crashed: {error}"
        self.request_stop(f"task {task.get_name()} crashed")

    async def stop(self) -> None:
        """Stop the started components in reverse order, each within its grace. Idempotent."""
        self.request_stop("stop")
        async with self._stop_lock:
            while self._started:
                component, grace = self._started.pop()
                try:
                    await asyncio.wait_for(component.stop(grace), grace + self.stop_slack)
                except TimeoutError:
                    log.warning("lifecycle.stop_overran", component=component.name, grace_s=grace)
                except Exception as exc:
                    log.error("lifecycle.stop_failed", component=component.name, error=str(exc), exc_info=exc)
            # Whatever a component left running is cancelled here, so nothing outlives the stop.
            leftovers = list(self._tasks)
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
