"""Durable, ordered, at-least-once delivery of incident events to every notifier.

Events are already in SQLite, as data (``Store.apply`` wrote them with the change that caused
them). At an event's first attempt its notifier renders it (``Notifier.render``) with the evidence
known by then, and the outbox keeps those bytes: every retry sends the same body.
One worker per notifier sends what is due, first in line per incident, so a slow or dead
notifier never delays another, and one incident's retries never hold back another's events.
Each attempt's outcome and the next attempt's time are stored, so a restart keeps the schedule.
Backoff is tenacity's exponential-with-jitter, used as a calculator: the schedule is ours to
persist, the arithmetic is theirs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from agent import payload
from agent.events import EVIDENCE_PHASE, Notification
from agent.store import OutboxItem, Store

if TYPE_CHECKING:  # pragma: no cover
    from actions.notifiers.base import AnyNotifier, Delivery

log = structlog.get_logger("lifeguard.outbox")

Spawn = Callable[[str, Coroutine[Any, Any, None]], "asyncio.Task[Any]"]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    retry_initial: float = 1.0
    retry_max: float = 300.0
    evidence_wait: float = 3.0


def backoff(attempt: int, policy: DeliveryPolicy) -> float:
    """Seconds before attempt ``attempt + 1``, after ``attempt`` failures (1-based)."""
    from tenacity import RetryCallState, wait_exponential_jitter

    wait = wait_exponential_jitter(
        multiplier=policy.retry_initial, max=policy.retry_max, jitter=policy.retry_initial
    )
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return min(policy.retry_max, float(wait(state)))


class Outbox:
    def __init__(
        self,
        store: Store,
        notifiers: dict[str, AnyNotifier],
        *,
        evidence_url: Callable[[str], str],
        evidence_ready: Callable[[str, str], Awaitable[None]] | None = None,
        policy: DeliveryPolicy = DeliveryPolicy(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.evidence_url = evidence_url
        self.evidence_ready = evidence_ready
        self.policy = policy
        self.clock = clock
        self._wake = {name: asyncio.Event() for name in notifiers}
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def wake(self) -> None:
        """New events were written: look at the queue now."""
        for event in self._wake.values():
            event.set()

    def start(self, spawn: Spawn | None = None) -> None:
        """One worker per notifier, made by ``spawn(name, coro)`` (a supervisor's, so a crash is seen)."""
        make = spawn or (lambda name, coro: asyncio.create_task(coro, name=name))
        for name in self.notifiers:
            self._tasks.append(make(f"outbox:{name}", self._worker(name)))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking work, give in-flight deliveries ``grace`` seconds, cancel the rest.

        A cancelled attempt is not recorded: its event stays pending and is sent after the next
        start (at least once)."""
        self._stopping = True
        self.wake()
        if self._in_flight:
            log.info("outbox.draining", in_flight=len(self._in_flight), grace_s=grace)
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("outbox.cancelled", deliveries=len(pending), reason="shutdown grace over")
                await asyncio.gather(*pending, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for notifier in self.notifiers.values():
            await notifier.close()

    async def _worker(self, name: str) -> None:
        wake = self._wake[name]
        while not self._stopping:
            wake.clear()
            items = await self.store.run(self.store.outbox.due, name, self.clock())
            if items and not self._stopping:
                batch = [asyncio.create_task(self._deliver(self.notifiers[name], i)) for i in items]
                self._in_flight.update(batch)
                try:
                    await asyncio.gather(*batch, return_exceptions=True)
                finally:
                    self._in_flight.difference_update(batch)
                continue
            next_at = await self.store.run(self.store.outbox.next_due_at, name)
            timeout = 60.0 if next_at is None else min(60.0, max(0.0, next_at - self.clock()))
            try:
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                pass

    async def _deliver(self, notifier: AnyNotifier, item: OutboxItem) -> None:
        bound = log.bind(
            incident_id=item.incident_id,
            event=item.event.kind,
            event_id=item.event_id,
            notifier=notifier.name,
            attempt=item.attempts + 1,
        )
        try:
            body = item.body if item.body is not None else await self._first_body(notifier, item)
        except _RenderFailed as exc:  # a notifier that cannot render this event never will: dead, not a loop
            reason = str(exc)
            await self.store.run(self.store.outbox.mark_dead, item, reason)
            bound.error("delivery.dead", detail=reason)
            return
        result: Delivery = await notifier.send(item.event_id, body)
        now = self.clock()
        if result.outcome == "delivered":
            await self.store.run(self.store.outbox.mark_delivered, item, now, result.detail)
            bound.info("delivery.delivered", detail=result.detail)
            return
        give_up_after = notifier.config.give_up_after
        if result.outcome == "dead" or now - item.created_at >= give_up_after:
            reason = result.detail if result.outcome == "dead" else f"gave up: {result.detail}"
            await self.store.run(self.store.outbox.mark_dead, item, reason)
            bound.error("delivery.dead", detail=reason)
            return
        delay = backoff(item.attempts + 1, self.policy)
        if result.retry_after is not None:
            delay = min(self.policy.retry_max, max(delay, result.retry_after))
        await self.store.run(self.store.outbox.mark_retry, item, now + delay, result.detail)
        bound.warning("delivery.retry", detail=result.detail, retry_in_s=round(delay, 2))

    async def _first_body(self, notifier: AnyNotifier, item: OutboxItem) -> bytes:
        phase = EVIDENCE_PHASE.get(item.event.kind)
        if phase and self.evidence_ready is not None:
            try:
                async with asyncio.timeout(self.policy.evidence_wait):
                    await self.evidence_ready(item.incident_id, phase)
            except TimeoutError:
                log.warning("evidence.late", incident_id=item.incident_id, phase=phase)
        evidence = await self.store.run(self.store.evidence.get, item.incident_id)
        notification = Notification(
            event=item.event,
            evidence=payload.latest_bundle(evidence),
            evidence_url=self.evidence_url(item.incident_id),
        )
        try:
            body = notifier.render(notification)
        except Exception as exc:
            raise _RenderFailed(f"cannot render the event: {type(exc).__name__}: {exc}"[:240]) from exc
        return await self.store.run(self.store.outbox.freeze_body, item.id, body)


class _RenderFailed(Exception):
    """A notifier's ``render`` raised: a bug in it, or an event it cannot express."""
