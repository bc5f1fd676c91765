"""Durable, ordered, at-least-once delivery of incident events to every notifier.

Events are already in SQLite, as data (``Store.apply`` wrote them with the change that caused
them). At an event's first attempt its notifier renders it (``Notifier.render``) with the evidence
known by then, and the outbox keeps those bytes: every retry sends the same body.
One worker per notifier sends what is due, first in line per incident, each delivery in its own
task: the worker takes newly due events of other incidents while one delivery hangs, so a slow or
dead notifier never delays another, and one incident's retries never hold back another's events.
Each attempt's outcome and the next attempt's time are stored, so a restart keeps the schedule.
Whatever goes wrong around an attempt (a hook or a notifier that raises, a store that refuses to
record the outcome: a full disk, a database locked by another process) is logged as
``delivery.error`` and backed off like a failed attempt, never retried in a loop: an outcome the
store refused is kept in memory and written again later, and its event is not sent meanwhile.
Backoff is tenacity's exponential-with-jitter, used as a calculator: the schedule is ours to
persist, the arithmetic is theirs.
A reload swaps notifiers in place (``reconfigure``): a changed one sends the events still pending
(same event ids, same frozen bodies); a removed one's worker stops and its deliveries under way
finish before it is closed (the daemon marks its pending events dead, as at start).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from agent import payload
from agent.events import EVIDENCE_PHASE, Notification, OpenIncident
from agent.metrics import DeliveryTally
from agent.store import OutboxItem, Store

if TYPE_CHECKING:  # pragma: no cover
    from actions.notifiers.base import AnyNotifier, Delivery

log = structlog.get_logger("lifeguard.outbox")

Spawn = Callable[[str, Coroutine[Any, Any, None]], "asyncio.Task[Any]"]

MAX_IN_FLIGHT = 50  # deliveries one notifier has under way at once (at most one per incident)
IDLE_WAIT = 60.0  # the longest a worker sleeps without looking at the queue


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
        evidence_public: bool = False,
        policy: DeliveryPolicy = DeliveryPolicy(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.evidence_url = evidence_url
        self.evidence_public = evidence_public  # agent.api.public_url is set: chat links are worth showing
        self.evidence_ready = evidence_ready
        self.policy = policy
        self.clock = clock
        self._wake = {name: asyncio.Event() for name in notifiers}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._spawn: Spawn = lambda name, coro: asyncio.create_task(coro, name=name)
        self._retiring: set[asyncio.Task[None]] = set()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._running: dict[str, dict[int, asyncio.Task[None]]] = {name: {} for name in notifiers}
        self._held: dict[str, dict[int, _Held]] = {name: {} for name in notifiers}
        self._to_resume = set(notifiers)  # notifiers not yet given the open incidents (Notifier.resume)
        self._stopping = False
        self.tally = DeliveryTally()  # outcomes recorded, for /metrics

    def wake(self) -> None:
        """New events were written: look at the queue now."""
        for event in self._wake.values():
            event.set()

    def start(self, spawn: Spawn | None = None) -> None:
        """One worker per notifier, made by ``spawn(name, coro)`` (a supervisor's, so a crash is seen)."""
        if spawn is not None:
            self._spawn = spawn
        for name in self.notifiers:
            self._tasks[name] = self._spawn(f"outbox:{name}", self._worker(name))

    async def reconfigure(self, notifiers: dict[str, AnyNotifier]) -> None:
        """Take the notifiers of a reloaded config: ``notifiers`` holds the added and changed ones
        (new objects) and the unchanged ones (the same objects); any other current one is removed."""
        for name in [n for n in self.notifiers if n not in notifiers]:
            gone = self.notifiers.pop(name)
            worker = self._tasks.pop(name, None)
            if worker is not None:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            self._to_resume.discard(name)
            self._retire(name, gone)
        for name, notifier in notifiers.items():
            old = self.notifiers.get(name)
            if old is notifier:
                continue
            self.notifiers[name] = notifier
            self._to_resume.add(name)  # a changed one is given the open incidents again
            if old is not None:
                self._retire(name, old)  # deliveries under way finish with it; the next ones use the new
                self._wake[name].set()
                continue
            self._wake[name] = asyncio.Event()
            self._running.setdefault(name, {})
            self._held.setdefault(name, {})
            self._tasks[name] = self._spawn(f"outbox:{name}", self._worker(name))

    def _retire(self, name: str, notifier: AnyNotifier) -> None:
        """Close a notifier the config no longer has, once its deliveries under way are over."""
        running = [t for t in self._running.get(name, {}).values() if not t.done()]

        async def close() -> None:
            if running:
                await asyncio.wait(running, timeout=max(30.0, notifier.config.timeout * 2))
            await notifier.close()

        task = asyncio.create_task(close(), name=f"outbox:retire:{name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking work, give in-flight deliveries ``grace`` seconds, cancel the rest.

        A cancelled attempt is not recorded: its event stays pending and is sent after the next
        start (at least once). Outcomes the store refused so far get one more write within the
        grace; any still unwritten are sent again after the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
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
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._retiring:  # notifiers a reload replaced: their deliveries are over by now
            await asyncio.wait(set(self._retiring), timeout=max(0.0, deadline - loop.time()))
        if any(held.outcome for by_id in self._held.values() for held in by_id.values()):
            last = asyncio.create_task(self._write_held(force=True))
            done, _ = await asyncio.wait({last}, timeout=max(0.0, deadline - loop.time()))
            if not done:
                last.cancel()
                await asyncio.gather(last, return_exceptions=True)
        for notifier in self.notifiers.values():
            await notifier.close()

    # -- the worker: takes what is due, never waits for a delivery to finish ------------------
    async def _worker(self, name: str) -> None:
        wake = self._wake[name]
        failures = 0
        while not self._stopping:
            wake.clear()
            try:
                timeout = await self._pass(name)
                failures = 0
            except Exception as exc:  # the queue itself could not be read: look again later, not at once
                failures += 1
                timeout = backoff(failures, self.policy)
                log.error(
                    "delivery.error", notifier=name, stage="queue", error=_describe(exc), retry_in_s=round(timeout, 2)
                )
            try:  # stop() sets the wake-up too
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                pass

    async def _pass(self, name: str) -> float:
        """Start a delivery for each due event; returns how long to sleep unless woken."""
        if name in self._to_resume:  # the first pass; a store that refuses fails it, and it is tried again
            await self._resume(self.notifiers[name])
            self._to_resume.discard(name)
        await self._write_held(name)
        running, held = self._running[name], self._held[name]
        room = MAX_IN_FLIGHT - len(running)
        if room <= 0:
            return IDLE_WAIT  # a finishing delivery wakes the worker
        items = await self.store.run(self.store.outbox.due, name, self.clock(), [*running, *held], room)
        for item in items:
            if self._stopping:
                return 0.0
            self._launch(name, item)
        if len(items) == room:
            return IDLE_WAIT
        next_at = await self.store.run(self.store.outbox.next_due_at, name, [*running, *held])
        times = [t for t in (next_at, *(h.until for h in held.values())) if t is not None]
        return IDLE_WAIT if not times else min(IDLE_WAIT, max(0.0, min(times) - self.clock()))

    def _launch(self, name: str, item: OutboxItem) -> None:
        running = self._running[name]
        task = asyncio.create_task(self._deliver(self.notifiers[name], item), name=f"delivery:{name}:{item.id}")
        running[item.id] = task
        self._in_flight.add(task)

        def done(task: asyncio.Task[None]) -> None:
            running.pop(item.id, None)
            self._in_flight.discard(task)
            self._wake[name].set()  # the next event of this incident may be first in line now
            if not task.cancelled() and (exc := task.exception()) is not None:
                # _deliver catches everything; should it fail all the same, the event is held back too
                delay = backoff(1, self.policy)
                self._held[name][item.id] = _Held(item, None, 1, self.clock() + delay)
                self._bound(name, item).error(
                    "delivery.error", stage="deliver", error=_describe(exc), retry_in_s=round(delay, 2)
                )

        task.add_done_callback(done)

    async def _resume(self, notifier: AnyNotifier) -> None:
        """Give a notifier that keeps incidents open at its service the ones open now (once per start)."""
        from actions.notifiers.base import Notifier

        if type(notifier).resume is Notifier.resume:
            return  # the default does nothing: no need to read the store

        def read() -> list[tuple[dict[str, Any], dict[str, Any]]]:
            # Only the incidents that were routed to this notifier: those it has deliveries for.
            ids = [row["id"] for row in self.store.incidents.open_rows()]
            mine = [i for i in ids if self.store.outbox.rows(i, notifier=notifier.name)]
            return [(self.store.incidents.snapshot(i), self.store.evidence.get(i)) for i in mine]

        found = [
            OpenIncident(
                incident=snapshot,
                agent=dict(self.store.agent_info),
                evidence=payload.latest_bundle(evidence),
                evidence_url=self.evidence_url(snapshot["id"]),
            )
            for snapshot, evidence in await self.store.run(read)
        ]
        try:
            await notifier.resume(found)
        except Exception as exc:  # a bug in the notifier: said once, never a loop
            log.error("delivery.error", notifier=notifier.name, stage="resume", error=_describe(exc))
            return
        if found:
            log.info("outbox.resumed", notifier=notifier.name, incidents=len(found))

    # -- one delivery: an attempt, then its outcome recorded ----------------------------------
    async def _deliver(self, notifier: AnyNotifier, item: OutboxItem) -> None:
        try:
            outcome = await self._attempt(notifier, item)
        except Exception as exc:  # a part that should not raise did: a failed attempt all the same
            self._bound(notifier.name, item).error("delivery.error", stage="attempt", error=_describe(exc))
            outcome = self._failed(notifier, item, self.clock(), f"error: {_describe(exc)}")
        await self._record(notifier.name, item, outcome, failures=0)

    async def _attempt(self, notifier: AnyNotifier, item: OutboxItem) -> _Outcome:
        try:
            body = item.body if item.body is not None else await self._first_body(notifier, item)
        except _RenderFailed as exc:  # a notifier that cannot render this event never will: dead, not a loop
            return _Outcome("dead", str(exc), self.clock())
        result: Delivery = await notifier.send(item.event_id, body)
        now = self.clock()
        if result.outcome == "delivered":
            return _Outcome("delivered", result.detail, now)
        dead = result.outcome == "dead"
        return self._failed(notifier, item, now, result.detail, dead=dead, retry_after=result.retry_after)

    def _failed(
        self,
        notifier: AnyNotifier,
        item: OutboxItem,
        now: float,
        detail: str,
        *,
        dead: bool = False,
        retry_after: float | None = None,
    ) -> _Outcome:
        if dead:
            return _Outcome("dead", detail, now)
        if now - item.created_at >= notifier.config.give_up_after:
            return _Outcome("dead", f"gave up: {detail}", now)
        delay = backoff(item.attempts + 1, self.policy)
        if retry_after is not None:
            delay = min(self.policy.retry_max, max(delay, retry_after))
        return _Outcome("retry", detail, now, delay)

    async def _record(self, name: str, item: OutboxItem, outcome: _Outcome, failures: int) -> None:
        """Store the outcome and log it; if the store refuses, hold it in memory and write it later."""
        bound = self._bound(name, item)
        outbox = self.store.outbox
        try:
            if outcome.status == "delivered":
                await self.store.run(outbox.mark_delivered, item, outcome.at, outcome.detail)
            elif outcome.status == "retry":
                await self.store.run(outbox.mark_retry, item, outcome.at + outcome.retry_in, outcome.detail)
            else:
                await self.store.run(outbox.mark_dead, item, outcome.detail)
        except Exception as exc:
            delay = backoff(failures + 1, self.policy)
            self._held[name][item.id] = _Held(item, outcome, failures + 1, self.clock() + delay)
            bound.error(
                "delivery.error",
                stage="record",
                outcome=outcome.status,
                detail=outcome.detail,
                error=_describe(exc),
                retry_in_s=round(delay, 2),
            )
            return
        self.tally.recorded(name, outcome.status)
        if outcome.status == "delivered":
            bound.info("delivery.delivered", detail=outcome.detail)
        elif outcome.status == "retry":
            bound.warning("delivery.retry", detail=outcome.detail, retry_in_s=round(outcome.retry_in, 2))
        else:
            bound.error("delivery.dead", detail=outcome.detail)

    async def _write_held(self, name: str | None = None, *, force: bool = False) -> None:
        """Write the outcomes the store refused once their backoff is over (all of them now, if ``force``)."""
        now = self.clock()
        for notifier in [name] if name else list(self._held):
            held = self._held[notifier]
            for item_id, entry in list(held.items()):
                if entry.until > now and not force:
                    continue
                del held[item_id]  # taken out first: a write cancelled half-way is not made twice
                if entry.outcome is not None:
                    await self._record(notifier, entry.item, entry.outcome, entry.failures)

    def _bound(self, name: str, item: OutboxItem) -> Any:
        return log.bind(
            incident_id=item.incident_id,
            event=item.event.kind,
            event_id=item.event_id,
            notifier=name,
            attempt=item.attempts + 1,
        )

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
            evidence_public=self.evidence_public,
        )
        try:
            body = notifier.render(notification)
        except Exception as exc:
            raise _RenderFailed(f"cannot render the event: {type(exc).__name__}: {exc}"[:240]) from exc
        return await self.store.run(self.store.outbox.freeze_body, item.id, body)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one attempt came to, as the store is to remember it."""

    status: Literal["delivered", "retry", "dead"]
    detail: str
    at: float
    retry_in: float = 0.0  # "retry": seconds from ``at`` to the next attempt


@dataclass(frozen=True, slots=True)
class _Held:
    """A delivery kept out of the queue until ``until``, with the outcome the store still owes (if any)."""

    item: OutboxItem
    outcome: _Outcome | None
    failures: int  # store writes refused so far: the backoff grows with them
    until: float


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:240]


class _RenderFailed(Exception):
    """A notifier's ``render`` raised: a bug in it, or an event it cannot express."""
