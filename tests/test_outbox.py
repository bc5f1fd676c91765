"""The outbox against real receivers and a real SQLite file: order, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

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
    cfg = WebhookNotifierConfig.model_validate(dict(name=name, type="webhook", url=url, secret=SECRET, **{"timeout": "1s", **extra}))
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


class Held(Scripted):
    """Answers 200, but holds requests the test chooses until it lets them go; counts each event id."""

    def __init__(self, hold) -> None:
        super().__init__()
        self.hold = hold  # (request number, parsed body) -> the event to wait for, or None
        self.holding = asyncio.Event()  # set while a request is held
        self.ids: list[str] = []

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.ids.append(request.headers["webhook-id"])
        gate = self.hold(len(self.ids), json.loads(body))
        if gate is not None:
            self.holding.set()
            await gate.wait()
        self.got.append((200, dict(request.headers), body))
        return web.Response(status=200)


async def test_a_store_that_refuses_to_record_a_delivery_is_backed_off_not_a_resend_storm(tmp_path, session) -> None:
    """The receiver takes the event while another process locks the database: logged, retried with backoff."""
    store = Store(tmp_path / "lifeguard.db", agent_info={"name": "t", "version": "0.1.0"}, busy_timeout=0.05)
    await store.run(store.open)
    go = asyncio.Event()
    rx = Held(lambda n, body: go if n == 1 else None)
    await rx.start()
    await incident_with_events(store, 2)
    box = make_outbox(store, {"ops": notifier("ops", rx.url, session)})
    locker = sqlite3.connect(tmp_path / "lifeguard.db", isolation_level=None, timeout=5)
    try:
        with capture_logs() as logs:
            box.start()
            await asyncio.wait_for(rx.holding.wait(), 5)
            locker.execute("BEGIN EXCLUSIVE")  # the first attempt is at the receiver: now the store refuses writes
            go.set()
            await asyncio.sleep(1.5)  # a storm is a rate: count what the receiver gets over a window
            during = list(rx.ids)
            locker.execute("ROLLBACK")
            rows = await rows_when(store, lambda rows: [r["status"] for r in rows] == ["delivered"] * 2)
        errors = [e for e in logs if e["event"] == "delivery.error"]
    finally:
        locker.close()
        await box.stop()
        await rx.stop()
        await store.aclose()
    first = during[0]
    assert during.count(first) <= 3, f"the same event sent {during.count(first)} times in 1.5 s"
    assert errors and all(e["log_level"] == "error" and "locked" in e["error"] for e in errors)
    assert errors[0]["retry_in_s"] > 0
    assert rx.ids.count(first) == 1, "an outcome the store refused is written again, not sent again"
    assert [json.loads(b)["sequence"] for _, _, b in rx.got][-1] == 2
    assert [r["sequence"] for r in rows] == [1, 2]


async def test_a_hanging_delivery_of_one_incident_does_not_delay_another_incidents_events(store, session) -> None:
    """alpha's receiver hangs up to the notifier's timeout; beta's events, written meanwhile, arrive at once."""
    hang = asyncio.Event()  # never set: alpha's delivery hangs until the notifier gives up or the test stops
    rx = Held(lambda n, body: hang if body["incident"]["check"] == "alpha" else None)
    await rx.start()
    await incident_with_events(store, 2, incident_id="inc_00000000000a1f", check="alpha", at=time.time() - 2)
    box = make_outbox(store, {"ops": notifier("ops", rx.url, session, timeout="6s")})
    box.start()
    try:
        await asyncio.wait_for(rx.holding.wait(), 5)  # alpha's first event hangs at the receiver
        written = time.monotonic()
        await incident_with_events(store, 2, incident_id="inc_00000000000b2e", check="beta", at=time.time() - 2)
        box.wake()
        await wait_until(lambda: len(rx.delivered()) == 2, 6, "beta's two events")
        waited = time.monotonic() - written
    finally:
        await box.stop(grace=0.1)  # alpha's attempt is still hanging: cancelled, not recorded
        await rx.stop()
    assert waited < 3.0, f"beta's events waited {waited:.2f} s behind alpha's hanging delivery"
    assert [(e["incident"]["check"], e["sequence"]) for e in rx.delivered()] == [("beta", 1), ("beta", 2)]
    rows = {(r["incident_id"][-4:], r["sequence"]): r for r in await store.run(store.outbox.rows)}
    assert rx.ids.count(rows[("0a1f", 1)]["event_id"]) == 1  # one in-flight delivery per incident
    assert rows[("0a1f", 2)]["event_id"] not in rx.ids  # alpha's second waits behind its first
    assert (rows[("0a1f", 1)]["status"], rows[("0a1f", 1)]["attempts"]) == ("pending", 0)


async def test_a_hook_that_raises_is_a_failed_attempt_logged_and_backed_off(store, session) -> None:
    rx = Scripted()
    await rx.start()
    await incident_with_events(store, 1)
    calls = []

    async def evidence_ready(incident_id: str, phase: str) -> None:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError("evidence store unreachable")

    box = make_outbox(store, {"ops": notifier("ops", rx.url, session)}, evidence_ready=evidence_ready)
    with capture_logs() as logs:
        box.start()
        try:
            await wait_until(lambda: rx.delivered(), 5, "the delivery")
            rows = await rows_when(store, lambda rows: rows[0]["status"] == "delivered")
        finally:
            await box.stop()
            await rx.stop()
    errors = [e for e in logs if e["event"] == "delivery.error"]
    assert [(e["stage"], e["error"]) for e in errors] == [("attempt", "RuntimeError: evidence store unreachable")] * 2
    assert [e["detail"] for e in logs if e["event"] == "delivery.retry"] == [
        "error: RuntimeError: evidence store unreachable"] * 2
    assert len(calls) == 3 and rows[0]["attempts"] == 3
    assert calls[1] - calls[0] >= FAST.retry_initial * 0.9  # backed off, not looped


async def test_stop_gives_an_in_flight_delivery_its_grace_and_records_it(store, session) -> None:
    go = asyncio.Event()
    rx = Held(lambda n, body: go)
    await rx.start()
    await incident_with_events(store, 1)
    box = make_outbox(store, {"ops": notifier("ops", rx.url, session)})
    box.start()
    try:
        await asyncio.wait_for(rx.holding.wait(), 5)
        stopping = asyncio.create_task(box.stop(grace=5))
        await asyncio.sleep(0)  # the stop has begun: no new work, the delivery under way gets the grace
        go.set()
        await asyncio.wait_for(stopping, 10)
    finally:
        await rx.stop()
    rows = await store.run(store.outbox.rows)
    assert (rows[0]["status"], rows[0]["attempts"]) == ("delivered", 1)


async def test_a_channel_down_for_a_while_delays_no_other_and_then_gets_everything_in_order(store, session) -> None:
    """One channel answers 500 until the test mends it; the other gets both incidents' events at once; once
    the first is back it gets every event of both incidents, each incident in order."""
    down, up = Scripted([500] * 100_000), Scripted()
    await down.start()
    await up.start()
    await incident_with_events(store, 3, notifiers=("down", "up"), incident_id="inc_0000000000010a", check="api")
    await incident_with_events(store, 2, notifiers=("down", "up"), incident_id="inc_0000000000020b", check="db")
    box = make_outbox(store, {"down": notifier("down", down.url, session), "up": notifier("up", up.url, session)})
    box.start()
    try:
        await wait_until(lambda: len(up.delivered()) == 5, 5, "all five events at the live channel")
        await wait_until(lambda: len(down.got) >= 6, 5, "the broken channel retried a few times")
        assert down.delivered() == []
        down.statuses.clear()  # mended
        await wait_until(lambda: len(down.delivered()) == 5, 20, "all five events once the channel is back")
    finally:
        await box.stop()
        await down.stop()
        await up.stop()
    for rx in (down, up):
        by_incident: dict[str, list[int]] = {}
        for event in rx.delivered():
            by_incident.setdefault(event["incident"]["id"], []).append(event["sequence"])
        assert by_incident == {"inc_0000000000010a": [1, 2, 3], "inc_0000000000020b": [1, 2]}
