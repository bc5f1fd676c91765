"""PagerDuty: the Events API v2 event of every kind (golden), and sends against a local stand-in."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from actions.notifiers import build_notifier
from actions.notifiers.pagerduty import PagerDutyNotifier, PagerDutyNotifierConfig, render_event
from tests.fake_pagerduty import ROUTING_KEY, PagerDutyFake
from tests.fixtures_paging import EVIDENCE_URL, INCIDENT_ID, KINDS, notification, pagerduty, session
from tests.test_payload import check_golden

__all__ = ["pagerduty", "session"]  # fixtures, used by name

INJECTION = "<b>bold</b> *star* `tick` @channel </code> _under_ [link](http://x)"


def pagerduty_notifier(session: aiohttp.ClientSession, url: str, **overrides: Any) -> PagerDutyNotifier:
    fields: dict[str, Any] = {"name": "pager", "type": "pagerduty", "routing_key": ROUTING_KEY, "url": url,
                              "timeout": "2s"}
    config = PagerDutyNotifierConfig.model_validate(fields | overrides)
    notifier = build_notifier(config, lambda: session)
    assert isinstance(notifier, PagerDutyNotifier)
    return notifier


async def deliver(notifier: PagerDutyNotifier, kind: str, **incident: Any) -> Any:
    body = notifier.render(notification(kind, **incident))
    return await notifier.send(f"evt_{kind}", body)


# --- render: pure, golden --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_the_golden_event(kind: str) -> None:
    check_golden(f"pagerduty.{kind}.json", render_event(notification(kind)))


def test_opened_triggers_with_the_incident_id_as_dedup_key_and_the_evidence_summary() -> None:
    event = json.loads(render_event(notification("incident.opened")))
    assert "routing_key" not in event  # added at each attempt, never frozen into the store
    assert event["event_action"] == "trigger" and event["dedup_key"] == INCIDENT_ID
    payload = event["payload"]
    assert payload["summary"] == "[SEV-1][OPENED] api failing: HTTP 500"
    assert (payload["source"], payload["severity"], payload["component"]) == ("web-01", "critical", "api")
    details = payload["custom_details"]
    assert details["Last error"] == "HTTP 500"
    assert details["Container state"] == "exited, exit code 137, OOM-killed"
    assert details["Last log lines"][-1] == "killed" and len(details["Last log lines"]) == 5
    assert event["links"] == [{"href": EVIDENCE_URL, "text": "Evidence bundle"}]


@pytest.mark.parametrize("kind", ["incident.heal_attempted", "incident.heal_succeeded", "incident.heal_failed",
                                  "incident.escalated", "incident.some_later_kind"])
def test_other_events_trigger_the_same_alert(kind: str) -> None:
    event = json.loads(render_event(notification(kind)))
    assert (event["event_action"], event["dedup_key"]) == ("trigger", INCIDENT_ID)


def test_resolved_resolves_by_the_same_dedup_key() -> None:
    assert json.loads(render_event(notification("incident.resolved"))) == {
        "event_action": "resolve", "dedup_key": INCIDENT_ID}


@pytest.mark.parametrize(("severity", "expected"),
                         [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info")])
def test_severity_is_mapped_to_pagerdutys(severity: str, expected: str) -> None:
    event = json.loads(render_event(notification("incident.opened", severity=severity)))
    assert event["payload"]["severity"] == expected


def test_without_a_public_url_there_is_no_link() -> None:
    event = json.loads(render_event(notification("incident.opened", public=False)))
    assert "links" not in event and "client_url" not in event
    assert "Evidence" not in event["payload"]["custom_details"]


def test_a_long_summary_is_cut_to_pagerdutys_limit() -> None:
    event = json.loads(render_event(notification("incident.opened", title="x" * 2000)))
    summary = event["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…")


def test_markup_in_names_and_logs_is_carried_as_plain_text() -> None:
    note = notification("incident.opened", logs=[INJECTION], check=INJECTION, title=f"{INJECTION} failing")
    event = json.loads(render_event(note))
    payload = event["payload"]
    assert payload["summary"] == f"[SEV-1][OPENED] {INJECTION} failing"
    assert payload["component"] == INJECTION and payload["custom_details"]["Check"] == INJECTION
    assert payload["custom_details"]["Last log lines"] == [INJECTION]


# --- send: against the stand-in ----------------------------------------------------------------


async def test_trigger_then_resolve_one_alert(pagerduty: PagerDutyFake, session: aiohttp.ClientSession) -> None:
    notifier = pagerduty_notifier(session, pagerduty.url)

    opened = await deliver(notifier, "incident.opened")
    healed = await deliver(notifier, "incident.heal_succeeded")
    resolved = await deliver(notifier, "incident.resolved")

    assert [d.outcome for d in (opened, healed, resolved)] == ["delivered"] * 3
    assert opened.status == 202 and opened.detail == "HTTP 202"
    [alert] = pagerduty.alerts.values()
    assert alert["status"] == "resolved"
    assert [e["event_action"] for e in alert["log"]] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in alert["log"]} == {INCIDENT_ID}
    request = pagerduty.requests[0]
    assert request["event"]["routing_key"] == ROUTING_KEY
    assert request["headers"]["Content-Type"] == "application/json"


async def test_an_unknown_routing_key_is_dead_with_pagerdutys_errors(
    pagerduty: PagerDutyFake, session: aiohttp.ClientSession
) -> None:
    wrong = "W" * 32
    delivery = await deliver(pagerduty_notifier(session, pagerduty.url, routing_key=wrong), "incident.opened")

    assert delivery.outcome == "dead" and delivery.status == 400
    assert delivery.detail == "HTTP 400: invalid event: Event object is invalid (Invalid routing key)"


async def test_a_key_of_the_wrong_length_is_dead_and_never_echoed(
    pagerduty: PagerDutyFake, session: aiohttp.ClientSession
) -> None:
    short = "sh0rt-key-planted"
    # A service that echoes the request in its error body must not put the key in the detail.
    pagerduty.force = (400, json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                        "errors": [f"routing_key {short} is wrong"]}), {})
    delivery = await deliver(pagerduty_notifier(session, pagerduty.url, routing_key=short), "incident.opened")

    assert delivery.outcome == "dead" and short not in delivery.detail and "routing_key" in delivery.detail


async def test_rate_limited_is_retried_after_retry_after(pagerduty: PagerDutyFake, session: aiohttp.ClientSession) -> None:
    pagerduty.force = (429, json.dumps({"status": "throttle event", "message": "Too many requests"}),
                       {"Retry-After": "30"})
    delivery = await deliver(pagerduty_notifier(session, pagerduty.url), "incident.opened")

    assert (delivery.outcome, delivery.status, delivery.retry_after) == ("retry", 429, 30.0)
    assert delivery.detail == "HTTP 429: throttle event: Too many requests"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(pagerduty: PagerDutyFake, session: aiohttp.ClientSession, status: int) -> None:
    pagerduty.force = (status, "", {})
    delivery = await deliver(pagerduty_notifier(session, pagerduty.url), "incident.opened")
    assert (delivery.outcome, delivery.status) == ("retry", status)


async def test_every_kind_is_accepted_by_the_events_api(pagerduty: PagerDutyFake, session: aiohttp.ClientSession) -> None:
    notifier = pagerduty_notifier(session, pagerduty.url)
    for kind in KINDS:
        delivery = await deliver(notifier, kind, title="x" * 2000)
        assert delivery.outcome == "delivered", (kind, delivery)


async def test_the_wire_body_carries_the_configured_key_at_each_attempt(session: aiohttp.ClientSession) -> None:
    body = render_event(notification("incident.opened"))
    first = pagerduty_notifier(session, "http://127.0.0.1:1/v2/enqueue").request("evt_1", body, 0.0)
    rotated = pagerduty_notifier(session, "http://127.0.0.1:1/v2/enqueue",
                                 routing_key="N" * 32).request("evt_1", body, 0.0)
    assert first.body is not None and rotated.body is not None
    assert json.loads(first.body) == {"routing_key": ROUTING_KEY, **json.loads(body)}
    assert json.loads(rotated.body)["routing_key"] == "N" * 32
    assert ROUTING_KEY not in repr(pagerduty_notifier(session, "http://127.0.0.1:1/").config)
