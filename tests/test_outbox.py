"""The outbox against real receivers and a real SQLite file: order, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import web

from actions.notifiers import build_notifier
from actions.notifiers.webhook import WebhookNotifierConfig
from agent.outbox import DeliveryPolicy, Outbox, backoff
from agent.store import Change, Store
from tests.fixtures_agent import SECRET, LocalServer, free_port, poll, wait_until

FAST = DeliveryPolicy(retry_initial=0.05, retry_max=0.2, evidence_wait=1.0)


class Scripted(LocalServer):
    """Answers each POST with the next status of a script (then 200), keeping what it got."""

    def __init__(self, statuses: list[int] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.statuses = list(statuses or [])
        self.headers = headers or {}
        self.got: list[tuple[int, dict, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        status = self.statuses.pop(0) if self.statuses else 200
        self.got.append((status, dict(request.headers), await request.read()))
        return web.Response(status=status, headers=self.headers if status >= 400 else None)

    def delivered(self) -> list[dict]:
        return [json.loads(body) for status, _, body in self.got if status < 300]


@pytest.fixture
def store(running_store: Store) -> Store:
    return running_store


@pytest.fixture
async def session() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as s:
        yield s


def notifier(name: str, url: str, session: aiohttp.ClientSession, **extra):
    cfg = WebhookNotifierConfig(name=name, type="webhook", url=url, secret=SECRET, timeout="1s", **extra)
    return build_notifier(cfg, lambda: session)


async def incident_with_events(store: Store, n: int, notifiers=("ops",), incident_id="inc_0000000000010a",
                               check="api", at: float | None = None) -> None:
    at = time.time() if at is None else at
    kinds = ["incident.opened", "incident.heal_attempted", "incident.heal_succeeded", "incident.resolved"]
    for i in range(n):
        change = Change(incident_id=incident_id, at=at + i, notifiers=notifiers, events=[(kinds[i], None)])
        if i == 0:
            change.create = {"check_name": check, "check_type": "http", "target": "t", "container": None,
                             "status": "open", "severity": "high", "title": "x", "opened_at": at,
                             "max_restarts": None}
        await store.run(store.apply, change)


async def rows_when(store: Store, predicate, timeout: float = 5.0) -> list[dict]:
    """The outbox rows once they satisfy the predicate (the write happens on the store thread)."""
    return await poll(lambda: store.run(store.outbox.rows), predicate, timeout, "outbox rows")


def make_outbox(store: Store, notifiers: dict, **kw) -> Outbox:
    return Outbox(store, notifiers, evidence_url=lambda i: f"http://agent/api/incidents/{i}/evidence",
                  policy=kw.pop("policy", FAST), **kw)


async def test_events_of_an_incident_arrive_in_order_through_retries(store, session) -> None:
    rx = Scripted([503, 503, 500])
    await rx.start()
    await incident_with_events(store, 3)
    box = make_outbox(store, {"ops": notifier("ops", rx.url, session)})
    box.start()
    try:
        await wait_until(lambda: len(rx.delivered()) == 3, 10, "3 deliveries")
    finally:
        await box.stop()
        await rx.stop()
    assert [e["sequence"] for e in rx.delivered()] == [1, 2, 3]
    first_tries = [(h["webhook-id"], body) for status, h, body in rx.got[:4]]
    assert len({i for i, _ in first_tries}) == 1, "a retry keeps its webhook-id"
    assert len({b for _, b in first_tries}) == 1, "a retry sends the same bytes"
    rows = await store.run(store.outbox.rows)
    assert [r["status"] for r in rows] == ["delivered"] * 3 and rows[0]["attempts"] == 4


async def test_a_rejected_event_goes_dead_and_stops_holding_back_the_next(store, session) -> None:
    rx = Scripted([410])
    await rx.start()
    await incident_with_events(store, 2)
    box = make_outbox(store, {"ops": notifier("ops", rx.url, session)})
    box.start()
    try:
        await wait_until(lambda: len(rx.delivered()) == 1, 10, "the second event")
    finally:
        await box.stop()
        await rx.stop()
    rows = await store.run(store.outbox.rows)
    assert [(r["status"], r["last_error"][:8] if r["last_error"] else None) for r in rows] == [
        ("dead", "HTTP 410"), ("delivered", None)]


async def test_gives_up_after_give_up_after(store, session) -> None:
    rx = Scripted([503] * 1000)
    await rx.start()
    await incident_with_events(store, 1, at=100.0)
    clock = {"now": 100.0}
    box = make_outbox(store, {"ops": notifier("ops", rx.url, session, give_up_after="1h")},
                      clock=lambda: clock["now"])
    box.start()
    try:
        await wait_until(lambda: len(rx.got) >= 1, 10, "a first attempt")
        clock["now"] += 3600  # an hour later, still failing
        box.wake()
        await wait_until(lambda: len(rx.got) >= 2, 10, "a last attempt")
        rows = await rows_when(store, lambda rows: rows[0]["status"] == "dead")
    finally:
        await box.stop()
        await rx.stop()
    assert rows[0]["status"] == "dead" and rows[0]["last_error"].startswith("gave up: HTTP 503")


async def test_a_dead_receiver_never_delays_another_notifier(store, session) -> None:
    good = Scripted()
    await good.start()
    await incident_with_events(store, 2, notifiers=("down", "up"))
    box = make_outbox(store, {
        "down": notifier("down", f"http://127.0.0.1:{free_port()}/hook", session),
        "up": notifier("up", good.url, session),
    })
    box.start()
    try:
        await wait_until(lambda: len(good.delivered()) == 2, 5, "both events at the live receiver")
    finally:
        await box.stop()
        await good.stop()
    rows = {(r["notifier"], r["sequence"]): r for r in await store.run(store.outbox.rows)}
    assert rows[("down", 1)]["status"] == "pending" and "refused" in rows[("down", 1)]["last_error"]
    assert rows[("down", 2)]["attempts"] == 0  # waits behind its incident's first event


async def test_retry_after_is_honoured_and_stored(store, session) -> None:
    rx = Scripted([429], headers={"Retry-After": "30"})
    await rx.start()
    await incident_with_events(store, 1, at=100.0)
    policy = DeliveryPolicy(retry_initial=0.05, retry_max=60, evidence_wait=0.1)
    clock = {"now": 100.0}
    box = make_outbox(store, {"ops": notifier("ops", rx.url, session)}, policy=policy, clock=lambda: clock["now"])
    box.start()
    try:
        await wait_until(lambda: len(rx.got) == 1, 5, "the 429")
        await rows_when(store, lambda rows: rows[0]["attempts"] == 1)
        next_at = await store.run(store.outbox.next_due_at, "ops")
    finally:
        await box.stop()
        await rx.stop()
    assert next_at == pytest.approx(130.0, abs=0.01)


async def test_first_delivery_waits_for_the_evidence(store, session) -> None:
    rx = Scripted()
    await rx.start()
    await incident_with_events(store, 1)
    asked, ready = asyncio.Event(), asyncio.Event()

    async def evidence_ready(incident_id: str, phase: str) -> None:
        assert phase == "opened"
        asked.set()
        await ready.wait()

    box = make_outbox(store, {"ops": notifier("ops", rx.url, session)}, evidence_ready=evidence_ready)
    box.start()
    try:
        await asyncio.wait_for(asked.wait(), 5)
        assert rx.got == []  # the first delivery is held until the evidence is ready
        await store.run(store.evidence.save, "inc_0000000000010a", "opened", 101.0,
                        {"phase": "opened", "collected_at": "2026-11-24T00:00:00.000Z", "checks": [],
                         "response": None, "container": None, "host": {"hostname": "h"}})
        ready.set()
        await wait_until(lambda: rx.delivered(), 5, "the delivery")
    finally:
        await box.stop()
        await rx.stop()
    evidence = rx.delivered()[0]["evidence"]
    assert evidence["phase"] == "opened" and evidence["host"] == {"hostname": "h"}
    assert evidence["url"] == "http://agent/api/incidents/inc_0000000000010a/evidence"


def test_backoff_grows_and_is_capped() -> None:
    policy = DeliveryPolicy(retry_initial=1, retry_max=300)
    waits = [backoff(n, policy) for n in range(1, 15)]
    assert 1 <= waits[0] <= 2
    assert 8 <= waits[3] <= 9
    assert max(waits) <= 300 and waits[-1] == 300
