"""Opsgenie: the Alert API call of every kind (golden), and sends against a local stand-in."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from actions.notifiers import build_notifier
from actions.notifiers.opsgenie import OpsgenieNotifier, OpsgenieNotifierConfig, render_call
from agent.config.model import Invalid
from tests.fake_opsgenie import API_KEY, OpsgenieFake
from tests.fixtures_paging import EVIDENCE_URL, INCIDENT_ID, KINDS, notification, opsgenie, session
from tests.test_payload import check_golden

__all__ = ["opsgenie", "session"]  # fixtures, used by name

INJECTION = "<b>bold</b> *star* `tick` @channel </code> _under_ [link](http://x)"
UNPROCESSABLE = {"message": "Request body is not processable. Please check the errors.",
                 "errors": {"message": "Message can not be empty."}, "took": 0.002,
                 "requestId": "9ae63dd7-ed00-4c81-86f0-c4ffd33142c9"}


def opsgenie_notifier(session: aiohttp.ClientSession, url: str, **overrides: Any) -> OpsgenieNotifier:
    fields: dict[str, Any] = {"name": "genie", "type": "opsgenie", "api_key": API_KEY, "url": url, "timeout": "2s"}
    notifier = build_notifier(OpsgenieNotifierConfig.model_validate(fields | overrides), lambda: session)
    assert isinstance(notifier, OpsgenieNotifier)
    return notifier


async def deliver(notifier: OpsgenieNotifier, kind: str, **incident: Any) -> Any:
    return await notifier.send(f"evt_{kind}", notifier.render(notification(kind, **incident)))


def call(kind: str, **incident: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(render_call(notification(kind, **incident)))
    return envelope


# --- render: pure, golden --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_the_golden_call(kind: str) -> None:
    check_golden(f"opsgenie.{kind}.json", render_call(notification(kind), [{"type": "team", "name": "ops"}]))


def test_opened_creates_an_alert_aliased_by_the_incident_id() -> None:
    envelope = call("incident.opened")
    assert (envelope["call"], envelope["alias"]) == ("create", INCIDENT_ID)
    body = envelope["body"]
    assert body["alias"] == INCIDENT_ID and body["message"] == "[SEV-1][OPENED] api failing: HTTP 500"
    assert (body["priority"], body["source"], body["entity"]) == ("P1", "web-01", "api")
    assert body["description"].startswith("[SEV-1][OPENED] api failing: HTTP 500\n\nCheck: api\n")
    assert "Last log lines:" in body["description"] and body["description"].endswith(f"Evidence: {EVIDENCE_URL}")
    assert all(isinstance(v, str) for v in body["details"].values())
    assert body["details"]["Evidence"] == EVIDENCE_URL and body["tags"] == ["lifeguard", "SEV-1", "critical"]
    assert "responders" not in body and API_KEY not in json.dumps(envelope)


def test_resolved_closes_and_the_rest_are_notes() -> None:
    assert call("incident.resolved")["call"] == "close"
    for kind in ("incident.heal_attempted", "incident.heal_succeeded", "incident.heal_failed",
                 "incident.escalated", "incident.some_later_kind"):
        envelope = call(kind)
        assert (envelope["call"], envelope["alias"]) == ("note", INCIDENT_ID)
        assert envelope["body"]["note"].startswith("[SEV-1][")


@pytest.mark.parametrize(("severity", "priority"), [("critical", "P1"), ("high", "P2"), ("medium", "P3"), ("low", "P4")])
def test_priority_follows_the_severity(severity: str, priority: str) -> None:
    assert call("incident.opened", severity=severity)["body"]["priority"] == priority


def test_the_message_is_cut_to_130_characters_and_the_description_keeps_it_whole() -> None:
    body = call("incident.opened", title="y" * 500)["body"]
    assert len(body["message"]) == 130 and body["message"].endswith("…")
    assert "y" * 500 in body["description"]


def test_markup_in_names_and_logs_is_carried_as_plain_text() -> None:
    body = json.loads(render_call(notification("incident.opened", logs=[INJECTION], check=INJECTION,
                                               title=f"{INJECTION} failing")))["body"]
    assert body["message"] == f"[SEV-1][OPENED] {INJECTION} failing"
    assert f"Check: {INJECTION}\n" in body["description"] and f"\n{INJECTION}\n" in body["description"]
    assert body["details"]["Check"] == INJECTION and body["entity"] == INJECTION


# --- send: against the stand-in ----------------------------------------------------------------


async def test_create_note_close_one_alert(opsgenie: OpsgenieFake, session: aiohttp.ClientSession) -> None:
    notifier = opsgenie_notifier(session, opsgenie.url, responders=[{"type": "team", "name": "ops"}])

    outcomes = [await deliver(notifier, kind) for kind in
                ("incident.opened", "incident.heal_attempted", "incident.escalated", "incident.resolved")]

    assert [d.outcome for d in outcomes] == ["delivered"] * 4 and outcomes[0].detail == "HTTP 202"
    assert [(r["path"], r["query"]) for r in opsgenie.requests] == [
        ("/v2/alerts", {}),
        (f"/v2/alerts/{INCIDENT_ID}/notes", {"identifierType": "alias"}),
        (f"/v2/alerts/{INCIDENT_ID}/notes", {"identifierType": "alias"}),
        (f"/v2/alerts/{INCIDENT_ID}/close", {"identifierType": "alias"}),
    ]
    alert = opsgenie.alerts[INCIDENT_ID]
    assert alert["status"] == "closed" and len(alert["notes"]) == 2
    assert alert["create"]["responders"] == [{"type": "team", "name": "ops"}]
    headers = opsgenie.requests[0]["headers"]
    assert headers["Authorization"] == f"GenieKey {API_KEY}" and headers["Content-Type"] == "application/json"


async def test_every_kind_is_accepted_by_the_alert_api(opsgenie: OpsgenieFake, session: aiohttp.ClientSession) -> None:
    notifier = opsgenie_notifier(session, opsgenie.url + "/")  # a trailing slash is fine
    for kind in KINDS:
        delivery = await deliver(notifier, kind, title="z" * 20000)
        assert delivery.outcome == "delivered", (kind, delivery)


async def test_unprocessable_is_dead_with_opsgenies_errors(opsgenie: OpsgenieFake, session: aiohttp.ClientSession) -> None:
    opsgenie.force = (422, json.dumps(UNPROCESSABLE), {})
    delivery = await deliver(opsgenie_notifier(session, opsgenie.url), "incident.opened")

    assert (delivery.outcome, delivery.status) == ("dead", 422)
    assert delivery.detail == ("HTTP 422: Request body is not processable. Please check the errors. "
                               "(message: Message can not be empty.)")


async def test_a_wrong_key_is_dead_and_never_shown(opsgenie: OpsgenieFake, session: aiohttp.ClientSession) -> None:
    planted = "planted-0123456789-genie-key"
    delivery = await deliver(opsgenie_notifier(session, opsgenie.url, api_key=planted), "incident.opened")

    assert (delivery.outcome, delivery.status, delivery.detail) == ("dead", 401, "HTTP 401: Could not authenticate")
    assert opsgenie.requests[0]["headers"]["Authorization"] == f"GenieKey {planted}"


async def test_a_key_echoed_back_is_masked_in_the_detail(opsgenie: OpsgenieFake, session: aiohttp.ClientSession) -> None:
    opsgenie.force = (403, json.dumps({"message": f"Key {API_KEY} cannot create alerts", "took": 0.001}), {})
    delivery = await deliver(opsgenie_notifier(session, opsgenie.url), "incident.opened")

    assert delivery.outcome == "dead" and API_KEY not in delivery.detail
    assert delivery.detail.startswith("HTTP 403: Key ") and delivery.detail.endswith(" cannot create alerts")


@pytest.mark.parametrize("kind", ["incident.resolved", "incident.heal_failed"])
async def test_closing_or_annotating_an_unknown_alias_is_dead_and_says_so(
    opsgenie: OpsgenieFake, session: aiohttp.ClientSession, kind: str
) -> None:
    delivery = await deliver(opsgenie_notifier(session, opsgenie.url), kind)

    doing = "close" if kind == "incident.resolved" else "add a note to"
    assert (delivery.outcome, delivery.status) == ("dead", 404)
    assert delivery.detail == f"HTTP 404: Opsgenie has no alert with alias {INCIDENT_ID} to {doing} (was it ever created?)"


async def test_rate_limited_is_retried_after_retry_after(opsgenie: OpsgenieFake, session: aiohttp.ClientSession) -> None:
    opsgenie.force = (429, json.dumps({"message": "Too many requests", "took": 0.0}), {"Retry-After": "12"})
    delivery = await deliver(opsgenie_notifier(session, opsgenie.url), "incident.opened")
    assert (delivery.outcome, delivery.status, delivery.retry_after) == ("retry", 429, 12.0)
    assert delivery.detail == "HTTP 429: Too many requests"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(opsgenie: OpsgenieFake, session: aiohttp.ClientSession, status: int) -> None:
    opsgenie.force = (status, "upstream trouble", {})
    delivery = await deliver(opsgenie_notifier(session, opsgenie.url), "incident.resolved")
    assert (delivery.outcome, delivery.status) == ("retry", status)


def test_responders_are_validated_with_their_path() -> None:
    with pytest.raises(Invalid) as raised:
        OpsgenieNotifierConfig.model_validate({"name": "g", "type": "opsgenie", "api_key": "k",
                                               "responders": [{"type": "team"}, {"type": "team", "username": "a@b"}]})
    messages = {(".".join(map(str, loc)), text) for loc, text in raised.value.errors}
    assert messages == {
        ("responders.0", "give exactly one of 'id', 'name' or 'username'"),
        ("responders.1", "'username' is for a responder of type 'user'; use 'name' or 'id'"),
    }
