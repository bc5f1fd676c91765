"""The Alertmanager notifier: its alert (golden), its verdict over peers, and the real binary.

What Alertmanager shows is read back from its own API v2: an incident's alert is active with its
labels while open, is no longer active once resolved, stays active past ``resolve_timeout`` only
because it is re-posted, times out once its agent is gone, and fires again after the agent restarts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from actions.notifiers import NOTIFIER_TYPES, build_notifier
from actions.notifiers.alertmanager import (
    ALERTNAME,
    AlertmanagerNotifier,
    AlertmanagerNotifierConfig,
    alert_of,
    alerts_endpoint,
    combine,
    render_alerts,
)
from actions.notifiers.base import Delivery, Notifier
from actions.notifiers.file import FileNotifierConfig
from agent.config.model import Invalid
from agent.events import Event, Notification, OpenIncident
from agent.outbox import DeliveryPolicy, Outbox
from agent.store import Change, Store
from agent.timefmt import iso
from tests.fixtures_agent import AgentProcess, LocalServer, agent_config, free_port, poll
from tests.fixtures_alertmanager import RESOLVE_TIMEOUT, Alertmanager
from tests.test_payload import check_golden
from tests.test_payload import notification as notification  # noqa: F401 - the golden event, a fixture

EVIDENCE = "http://127.0.0.1:9810/api/incidents/{}/evidence"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_notification(
    check: str,
    *,
    incident_id: str | None = None,
    agent: str = "web-01",
    resolved: bool = False,
    kind: str | None = None,
    **incident: Any,
) -> Notification:
    incident_id = incident_id or f"inc_{uuid.uuid4().hex[:24]}"
    now = time.time()
    snapshot = {
        "id": incident_id, "check": check, "check_type": "http", "status": "resolved" if resolved else "open",
        "severity": "high", "sev": "SEV-2", "title": f"{check} failing: HTTP 500", "opened_at": iso(now - 30),
        "resolved_at": iso(now) if resolved else None, "target": "http://127.0.0.1:1/health", "container": None,
        "resolve_reason": "recovered" if resolved else None, "heal": None,
        "timeline": [{"at": iso(now - 30), "kind": "opened", "message": "HTTP 500"}],
    } | incident  # fmt: skip
    event = Event(
        id=f"evt_{uuid.uuid4().hex[:24]}",
        kind=kind or ("incident.resolved" if resolved else "incident.opened"),
        incident_id=incident_id,
        sequence=2 if resolved else 1,
        occurred_at=now,
        agent={"name": agent, "version": "0.1.0"},
        incident=snapshot,
    )
    return Notification(event=event, evidence=None, evidence_url=EVIDENCE.format(incident_id))


def config(urls: list[str] | str, **extra: Any) -> AlertmanagerNotifierConfig:
    return AlertmanagerNotifierConfig.model_validate({"name": "fleet", "type": "alertmanager", "urls": urls,
                                                      "timeout": "1s", **extra})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def make_notifier(session: aiohttp.ClientSession) -> AsyncIterator[Any]:
    made: list[AlertmanagerNotifier] = []

    def make(urls: list[str] | str, **extra: Any) -> AlertmanagerNotifier:
        notifier = build_notifier(config(urls, **extra), lambda: session)
        assert isinstance(notifier, AlertmanagerNotifier)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.close()


async def active(am: Alertmanager, **matchers: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(am.active, **matchers)


async def stays(probe: Any, holds: Any, seconds: float, what: str) -> None:
    """``holds(await probe())`` for ``seconds``, checked every 0.25 s."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await probe()
        assert holds(value), f"{what} stopped holding: {value!r}"
        await asyncio.sleep(0.25)


# -- the alert, pure ------------------------------------------------------------------------------
def test_the_alertmanager_body_is_the_golden_bytes(notification: Notification) -> None:  # noqa: F811
    check_golden("incident-opened.alertmanager.body", render_alerts(notification))


def test_a_resolved_event_keeps_the_labels_and_ends_at_its_resolution() -> None:
    opened = make_notification("api", container="api-1")
    resolved_incident = opened.event.incident | {"status": "resolved", "resolved_at": "2025-11-24T03:15:54.000Z"}
    resolved = replace(opened, event=replace(opened.event, kind="incident.resolved", incident=resolved_incident))
    first, last = alert_of(opened), alert_of(resolved)
    assert first["labels"] == last["labels"] == {
        "alertname": ALERTNAME, "incident_id": opened.event.incident_id, "check": "api", "severity": "high",
        "sev": "SEV-2", "instance": "web-01", "container": "api-1",
    }  # fmt: skip
    assert "endsAt" not in first
    assert last["endsAt"] == "2025-11-24T03:15:54.000Z" and last["startsAt"] == first["startsAt"]
    assert first["annotations"] == {
        "summary": "api failing: HTTP 500", "description": "HTTP 500", "evidence_url": opened.evidence_url,
    }  # fmt: skip


def test_a_check_without_a_container_has_no_container_label() -> None:
    assert "container" not in alert_of(make_notification("api"))["labels"]


def test_tags_are_one_label_a_matcher_finds_each_tag_in() -> None:
    labels = alert_of(make_notification("api", tags=["db", "payments"]))["labels"]
    assert labels["tags"] == ",db,payments,"
    assert "tags" not in alert_of(make_notification("api", tags=[]))["labels"]


def test_a_test_notification_is_an_alert_of_its_own_that_ends_by_itself() -> None:
    test = make_notification("api", kind="notifier.test")
    alert = alert_of(test)
    assert alert["labels"]["alertname"] == "LifeguardTest"
    assert alert["endsAt"] == iso(test.event.occurred_at + 300)


def test_markup_and_quotes_in_names_stay_plain_json_strings() -> None:
    hostile = 'api"</code>`*@channel<b>'
    body = render_alerts(make_notification(hostile, title=f"{hostile} failing"))
    [alert] = json.loads(body)
    assert alert["labels"]["check"] == hostile and alert["annotations"]["summary"] == f"{hostile} failing"


# -- config -----------------------------------------------------------------------------------------
def test_config_takes_one_url_or_several() -> None:
    assert config("http://am:9093").urls == ["http://am:9093"]
    assert config(["http://am-1:9093", "http://am-2:9093"], resend_every="30s").resend_every == 30.0
    assert config("http://am:9093").resend_every == 60.0
    assert NOTIFIER_TYPES["alertmanager"] is AlertmanagerNotifier


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"urls": []}, "at least 1"),
        ({"urls": ["am:9093"]}, "http:// or https://"),
        ({"urls": ["http://am:9093", "http://am:9093/"]}, "the same Alertmanager twice"),
        ({"urls": "http://am:9093", "resend_every": "500ms"}, "at least 1s"),
        ({"urls": "http://am:9093", "resend_every": "0s"}, "longer than 0s"),
    ],
)
def test_config_refusals_name_the_problem(extra: dict[str, Any], says: str) -> None:
    with pytest.raises(Invalid, match=says):
        AlertmanagerNotifierConfig.model_validate({"name": "fleet", "type": "alertmanager", **extra})


def test_the_endpoint_is_the_alerts_api_under_the_base_url() -> None:
    assert alerts_endpoint("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert alerts_endpoint("http://am:9093/prefix/") == "http://am:9093/prefix/api/v2/alerts"
    assert alerts_endpoint("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


# -- one verdict over every peer --------------------------------------------------------------------
def test_one_peer_accepting_is_enough() -> None:
    result = combine([("am-1:9093", Delivery("delivered", "HTTP 200", 200)),
                      ("am-2:9093", Delivery("retry", "connection refused"))])  # fmt: skip
    assert result.outcome == "delivered"
    assert result.detail == "accepted by 1 of 2: am-2:9093 connection refused"


def test_no_peer_accepting_is_retried_with_the_shortest_wait_asked() -> None:
    result = combine([("a", Delivery("retry", "HTTP 503", 503, retry_after=30.0)),
                      ("b", Delivery("retry", "HTTP 429", 429, retry_after=5.0)),
                      ("c", Delivery("dead", "HTTP 400", 400))])  # fmt: skip
    assert (result.outcome, result.retry_after) == ("retry", 5.0)


def test_every_peer_refusing_for_good_is_dead() -> None:
    result = combine([("a", Delivery("dead", "HTTP 400: bad", 400)), ("b", Delivery("dead", "HTTP 400: bad", 400))])
    assert result.outcome == "dead" and result.status == 400


def test_a_single_peer_verdict_is_passed_on_as_it_is() -> None:
    only = Delivery("retry", "timed out after 1s")
    assert combine([("a", only)]) is only


# -- against the real binary ------------------------------------------------------------------------
async def test_an_opened_alert_is_active_with_its_labels_and_its_resolution_ends_it(
    alertmanager: Alertmanager, make_notifier: Any
) -> None:
    check = unique("api")
    notifier = make_notifier(alertmanager.url)
    opened = make_notification(check, container="api-1", tags=["db"])
    result = await notifier.send(opened.event.id, notifier.render(opened))
    assert (result.outcome, result.detail) == ("delivered", "HTTP 200")
    [alert] = await active(alertmanager, check=check)
    assert alert["labels"] == {
        "alertname": ALERTNAME, "incident_id": opened.event.incident_id, "check": check, "severity": "high",
        "sev": "SEV-2", "instance": "web-01", "container": "api-1", "tags": ",db,",
    }  # fmt: skip
    assert alert["annotations"]["summary"] == f"{check} failing: HTTP 500"
    assert alert["generatorURL"] == opened.evidence_url
    assert notifier.firing == [opened.event.incident_id]

    resolved = make_notification(check, incident_id=opened.event.incident_id, container="api-1", tags=["db"],
                                 resolved=True)  # fmt: skip
    assert (await notifier.send(resolved.event.id, notifier.render(resolved))).outcome == "delivered"
    assert await active(alertmanager, check=check) == []
    assert notifier.firing == []


async def test_alertmanager_refusing_an_alert_is_dead(alertmanager: Alertmanager, make_notifier: Any) -> None:
    notifier = make_notifier(alertmanager.url)
    broken = [{"labels": {"alertname": ALERTNAME, "incident_id": "inc_x"},
               "startsAt": "2025-11-24T03:15:54.000Z", "endsAt": "2020-01-01T00:00:00.000Z"}]  # fmt: skip
    result = await notifier.send("evt_1", json.dumps(broken).encode())
    assert result.outcome == "dead" and result.status == 400
    assert "start time must be before end time" in result.detail


async def test_a_peer_down_still_delivers_and_every_peer_down_is_retried(
    alertmanager: Alertmanager, make_notifier: Any
) -> None:
    check, down = unique("api"), f"http://127.0.0.1:{free_port()}"
    opened = make_notification(check)
    both = make_notifier([down, alertmanager.url])
    result = await both.send(opened.event.id, both.render(opened))
    assert result.outcome == "delivered"
    assert result.detail.startswith("accepted by 1 of 2: 127.0.0.1:") and "refused" in result.detail
    assert len(await active(alertmanager, check=check)) == 1

    nobody = make_notifier([down, f"http://127.0.0.1:{free_port()}"])
    result = await nobody.send(opened.event.id, nobody.render(opened))
    assert result.outcome == "retry" and result.detail.startswith("accepted by 0 of 2")
    assert nobody.firing == []  # not accepted anywhere: nothing to keep firing yet


async def test_re_posts_keep_an_alert_firing_past_resolve_timeout_and_stopping_lets_it_time_out(
    alertmanager: Alertmanager, make_notifier: Any
) -> None:
    check = unique("api")
    notifier = make_notifier(alertmanager.url, resend_every="1s")
    opened = make_notification(check)
    assert (await notifier.send(opened.event.id, notifier.render(opened))).outcome == "delivered"
    await stays(lambda: active(alertmanager, check=check), lambda a: len(a) == 1, RESOLVE_TIMEOUT + 2, "firing")

    await notifier.close()  # as an agent that stops: nothing re-posts
    await poll(lambda: active(alertmanager, check=check), lambda a: a == [], RESOLVE_TIMEOUT + 5,
               "the alert to time out")  # fmt: skip


async def test_a_resolved_incident_is_never_re_posted(alertmanager: Alertmanager, make_notifier: Any) -> None:
    check = unique("api")
    notifier = make_notifier(alertmanager.url, resend_every="1s")
    opened = make_notification(check)
    await notifier.send(opened.event.id, notifier.render(opened))
    resolved = make_notification(check, incident_id=opened.event.incident_id, resolved=True)
    await notifier.send(resolved.event.id, notifier.render(resolved))
    await stays(lambda: active(alertmanager, check=check), lambda a: a == [], 2.5, "resolved")


async def test_resume_re_posts_the_open_incidents_at_once(alertmanager: Alertmanager, make_notifier: Any) -> None:
    check = unique("api")
    notifier = make_notifier(alertmanager.url, resend_every="1m")
    before = make_notification(check, container="api-1")
    await notifier.resume([OpenIncident(before.event.incident, before.event.agent, None, before.evidence_url)])
    [alert] = await poll(lambda: active(alertmanager, check=check), lambda a: len(a) == 1, 5, "the resumed alert")
    # The same labels as the events' own alerts: Alertmanager sees the same alert, not a second one.
    assert alert["labels"] == alert_of(before)["labels"]
    assert notifier.firing == [before.event.incident_id]


class Echo(LocalServer):
    """Answers 400 with the request's Authorization header and URL echoed back, as a careless proxy might."""

    def routes(self, app: web.Application) -> None:
        async def echo(request: web.Request) -> web.Response:
            return web.Response(status=400, text=f"denied {request.headers.get('Authorization')} {request.url}"
                                                 f" pass=s3cret-Pa55word")  # fmt: skip

        app.router.add_post("/api/v2/alerts", echo)


async def test_a_credential_in_a_url_never_reaches_a_detail(make_notifier: Any) -> None:
    echo = Echo()
    await echo.start()
    try:
        notifier = make_notifier([f"http://ops:s3cret-Pa55word@127.0.0.1:{echo.port}",
                                  f"http://ops:s3cret-Pa55word@127.0.0.1:{free_port()}"])  # fmt: skip
        result = await notifier.send("evt_1", render_alerts(make_notification("api")))
    finally:
        await echo.stop()
    assert result.outcome == "retry" and "HTTP 400" in result.detail
    assert "s3cret-Pa55word" not in result.detail and "ops:" not in result.detail


# -- the outbox's resume hook -----------------------------------------------------------------------
class Resuming(Notifier[FileNotifierConfig]):
    """Keeps what ``resume`` got and the order things happened in."""

    type = "resuming"
    config_model = FileNotifierConfig

    def __init__(self, fail: bool = False) -> None:
        super().__init__(FileNotifierConfig(name="keeper", type="file", path="/tmp/unused"), lambda: None)  # type: ignore[arg-type, return-value]
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def render(self, notification: Notification) -> bytes:
        return notification.event.kind.encode()

    async def send(self, event_id: str, body: bytes) -> Delivery:
        self.calls.append(("send", body.decode()))
        return Delivery("delivered", "ok")

    async def resume(self, open_incidents: Any) -> None:
        self.calls.append(("resume", list(open_incidents)))
        if self.fail:
            raise RuntimeError("resume broke")


async def open_incident(store: Store, incident_id: str, check: str, at: float) -> None:
    await store.run(store.apply, Change(
        incident_id=incident_id, at=at, notifiers=["keeper"], events=[("incident.opened", None)],
        create={"check_name": check, "check_type": "http", "target": "t", "container": "c1", "status": "open",
                "severity": "critical", "title": f"{check} failing", "opened_at": at, "max_restarts": None},
        timeline=[("opened", "HTTP 500")],
    ))  # fmt: skip


async def test_the_outbox_resumes_a_notifier_once_with_the_open_incidents_before_delivering(
    running_store: Store,
) -> None:
    now = time.time()
    await open_incident(running_store, "inc_0000000000000a", "api", now)
    await open_incident(running_store, "inc_0000000000000b", "db", now)
    await running_store.run(running_store.apply, Change(
        incident_id="inc_0000000000000b", at=now + 1, notifiers=["keeper"], events=[("incident.resolved", None)],
        update={"status": "resolved", "resolved_at": now + 1, "resolve_reason": "recovered"},
    ))  # fmt: skip
    keeper = Resuming()
    outbox = Outbox(running_store, {"keeper": keeper}, evidence_url=lambda i: f"http://agent/{i}/evidence",
                    policy=DeliveryPolicy(retry_initial=0.05, retry_max=0.2))  # fmt: skip
    with capture_logs() as logs:
        outbox.start()
        try:
            await poll(lambda: asyncio.sleep(0, len(keeper.calls)), lambda n: n >= 4, 5, "resume and 3 deliveries")
        finally:
            await outbox.stop()
    (kind, [only]), *sends = keeper.calls
    assert kind == "resume" and [k for k, _ in sends] == ["send"] * 3
    assert only.incident["id"] == "inc_0000000000000a" and only.incident["status"] == "open"
    assert only.incident["container"] == "c1" and only.agent == {"name": "t", "version": "0.1.0"}
    assert only.evidence_url == "http://agent/inc_0000000000000a/evidence"
    assert [e for e in logs if e["event"] == "outbox.resumed"] == [
        {"event": "outbox.resumed", "notifier": "keeper", "incidents": 1, "log_level": "info"}
    ]


async def test_a_notifier_whose_resume_raises_is_logged_and_still_gets_its_deliveries(running_store: Store) -> None:
    await open_incident(running_store, "inc_0000000000000c", "api", time.time())
    keeper = Resuming(fail=True)
    outbox = Outbox(running_store, {"keeper": keeper}, evidence_url=lambda i: i)
    with capture_logs() as logs:
        outbox.start()
        try:
            await poll(lambda: asyncio.sleep(0, len(keeper.calls)), lambda n: n >= 2, 5, "the delivery")
        finally:
            await outbox.stop()
    assert [k for k, _ in keeper.calls] == ["resume", "send"]
    [error] = [e for e in logs if e["event"] == "delivery.error"]
    assert error["stage"] == "resume" and "resume broke" in error["error"]


# -- end to end: ``lifeguard run`` posting to the real binary ---------------------------------------
def am_notifier(am: Alertmanager, **extra: Any) -> dict[str, Any]:
    return {"name": "fleet", "type": "alertmanager", "urls": [am.url], "resend_every": "1s", "timeout": "1s", **extra}


async def test_e2e_an_incident_fires_stays_firing_while_open_and_resolves(
    alertmanager: Alertmanager, target: Any, spawn_agent: Any
) -> None:
    check = unique("api")
    agent = spawn_agent(agent_config([{"name": check, "type": "http", "url": target.url, "severity": "SEV-1"}],
                                     [am_notifier(alertmanager)], name="web-01"))  # fmt: skip
    await agent.ready()
    target.status, target.body = 500, "database is down"
    [alert] = await poll(lambda: active(alertmanager, check=check), lambda a: len(a) == 1, 15, "the alert")
    labels = alert["labels"]
    assert labels["alertname"] == ALERTNAME and labels["check"] == check and labels["instance"] == "web-01"
    assert (labels["severity"], labels["sev"]) == ("critical", "SEV-1") and labels["incident_id"].startswith("inc_")
    assert alert["annotations"]["summary"] == f"{check} failing: HTTP 500"
    assert alert["annotations"]["description"] == "HTTP 500"
    assert alert["annotations"]["evidence_url"].endswith(f"/api/incidents/{labels['incident_id']}/evidence")
    # Alertmanager would time it out after RESOLVE_TIMEOUT; the agent's re-posts keep it active.
    await stays(lambda: active(alertmanager, check=check), lambda a: len(a) == 1, RESOLVE_TIMEOUT + 2, "firing")

    target.status, target.body = 200, "ok"
    await poll(lambda: active(alertmanager, check=check), lambda a: a == [], 15, "the alert to be resolved")
    assert await asyncio.to_thread(alertmanager.get, "alerts", check=check) == []  # resolved, not silenced


async def test_e2e_two_agents_are_two_instances_in_one_alert_group(
    alertmanager: Alertmanager, target: Any, tmp_path: Path
) -> None:
    check = unique("api")
    agents = []
    for host in ("host-a", "host-b"):
        (tmp_path / host).mkdir()
        cfg = agent_config([{"name": check, "type": "http", "url": target.url}], [am_notifier(alertmanager)], name=host)
        agents.append(AgentProcess(tmp_path / host, cfg))  # each its own folder: config, state, log
    try:
        for agent in agents:
            agent.start()
        for agent in agents:
            await agent.ready()
        target.status = 500
        await poll(lambda: active(alertmanager, check=check), lambda a: len(a) == 2, 20, "both agents' alerts")
    finally:
        for agent in agents:
            agent.kill()
    [group] = await asyncio.to_thread(alertmanager.groups, check=check)
    assert group["labels"] == {"alertname": ALERTNAME, "check": check}
    assert sorted(a["labels"]["instance"] for a in group["alerts"]) == ["host-a", "host-b"]


async def test_e2e_an_incident_open_before_a_restart_fires_again_after_it(
    alertmanager: Alertmanager, target: Any, spawn_agent: Any
) -> None:
    check = unique("api")
    cfg = agent_config([{"name": check, "type": "http", "url": target.url}], [am_notifier(alertmanager)])
    first = spawn_agent(cfg)
    await first.ready()
    target.status = 500
    [alert] = await poll(lambda: active(alertmanager, check=check), lambda a: len(a) == 1, 15, "the alert")
    incident_id = alert["labels"]["incident_id"]

    first.kill()  # SIGKILL: an agent that dies lets its alert time out
    await poll(lambda: active(alertmanager, check=check), lambda a: a == [], RESOLVE_TIMEOUT + 5,
               "the dead agent's alert to time out")  # fmt: skip

    second = spawn_agent(cfg)  # the same state: the incident is still open, no new event is made
    await second.ready()
    [again] = await poll(lambda: active(alertmanager, check=check), lambda a: len(a) == 1, 15, "the re-posted alert")
    assert again["labels"]["incident_id"] == incident_id
    _, listed = await second.api("/api/incidents?status=open")
    assert [i["id"] for i in listed["incidents"]] == [incident_id]
    assert any(e.get("event") == "outbox.resumed" for e in second.log_events())
