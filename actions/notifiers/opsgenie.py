"""Page through Opsgenie's Alert API: one alert per incident, created, annotated and closed.

The incident id is the alert's ``alias``, so every event of an incident reaches the same alert:
``incident.opened`` creates it (``POST /v2/alerts``), ``incident.resolved`` closes it
(``POST /v2/alerts/{alias}/close?identifierType=alias``) and every other event adds a note to it
(``POST /v2/alerts/{alias}/notes?identifierType=alias``). A test message creates an alert of its
own, marked ``[TEST]``.

The three calls go to three paths, but ``render`` must be pure and its bytes are frozen for every
retry. So the rendered body is a small envelope that says which call it is::

    {"call": "create" | "close" | "note", "alias": "inc_…", "body": {…the call's JSON…}}

and ``request`` turns it into the call's path and sends ``body`` as the JSON Opsgenie reads. The
API key is not in the envelope: it goes in the ``Authorization: GenieKey …`` header at each attempt.

Opsgenie's answers: ``202`` accepted (delivered); ``422`` (a field Opsgenie refuses), ``401`` /
``403`` (a wrong or disabled key) and other 4xx dead, with Opsgenie's message and field errors in
the detail; ``404`` on a close or a note means Opsgenie knows no alert with that alias (dead, said
so); ``429`` (honouring ``Retry-After``) and ``5xx`` retried.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import quote

from actions.notifiers.http import Answer, HttpNotifier, Request, classify_answer, with_explanation
from actions.notifiers.message import Message, build_message, compact_json, cut
from agent.config import NotifierConfigBase
from agent.config.model import field
from agent.config.types import ConfigModel, HttpUrl, NonEmptyStr, Secret

if TYPE_CHECKING:  # pragma: no cover
    from actions.notifiers.base import Delivery
    from agent.events import Notification

__all__ = ["OpsgenieNotifier", "OpsgenieNotifierConfig", "OpsgenieResponder", "render_call"]

# Opsgenie's limits on an alert's fields.
MESSAGE_CHARS = 130
DESCRIPTION_CHARS = 15000
NOTE_CHARS = 25000
DETAIL_VALUE_CHARS = 1000  # details: 8,000 characters in all; ours are short facts
TAGS = 20
TAG_CHARS = 50
SOURCE_CHARS = 100
PRIORITIES = {"critical": "P1", "high": "P2", "medium": "P3", "low": "P4"}
USER = "Lifeguard"

Call = Literal["create", "close", "note"]


class OpsgenieResponder(ConfigModel):
    """Who an alert is routed to: a team, user, escalation or schedule, by id or name."""

    type: Literal["team", "user", "escalation", "schedule"]
    id: NonEmptyStr | None = None
    name: NonEmptyStr | None = None
    username: NonEmptyStr | None = None

    def __post_init__(self) -> None:
        given = [key for key in ("id", "name", "username") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'id', 'name' or 'username'")
        if self.username is not None and self.type != "user":
            raise ValueError("'username' is for a responder of type 'user'; use 'name' or 'id'")

    def document(self) -> dict[str, str]:
        return {key: value for key, value in self.model_dump().items() if value is not None}


class OpsgenieNotifierConfig(NotifierConfigBase):
    """Create, annotate and close one Opsgenie alert per incident (Alert API v2)."""

    type: Literal["opsgenie"]
    api_key: Annotated[NonEmptyStr, Secret]  # an API integration's key
    url: HttpUrl = "https://api.opsgenie.com"  # EU accounts: https://api.eu.opsgenie.com
    responders: list[OpsgenieResponder] = field(default_factory=list)


class OpsgenieNotifier(HttpNotifier[OpsgenieNotifierConfig]):
    """Send each event as the Alert API call it stands for, by the incident's alias."""

    type: ClassVar[str] = "opsgenie"
    config_model = OpsgenieNotifierConfig
    config: OpsgenieNotifierConfig

    def render(self, notification: Notification) -> bytes:
        return render_call(notification, [r.document() for r in self.config.responders])

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        call, alias, inner = _unwrap(body)
        base = str(self.config.url).rstrip("/") + "/v2/alerts"
        if call == "create":
            url = base
        else:
            action = "close" if call == "close" else "notes"
            url = f"{base}/{quote(alias, safe='')}/{action}?identifierType=alias"
        headers = {"Authorization": f"GenieKey {self.config.api_key}"}
        return Request(url, headers, body=compact_json(inner))

    async def send(self, event_id: str, body: bytes) -> Delivery:
        delivery = await super().send(event_id, body)
        if delivery.status == 404:
            call, alias, _ = _unwrap(body)
            if call != "create":
                doing = "close" if call == "close" else "add a note to"
                detail = f"HTTP 404: Opsgenie has no alert with alias {alias} to {doing} (was it ever created?)"
                return replace(delivery, detail=self.redact(detail))
        return delivery

    def classify(self, answer: Answer) -> Delivery:
        return with_explanation(classify_answer(answer, self.redact), answer, _explain, self.redact)


def render_call(notification: Notification, responders: list[dict[str, str]] | None = None) -> bytes:
    """The envelope of the Alert API call this event stands for (see the module's docstring)."""
    event = notification.event
    message = build_message(notification)
    alias = event.incident_id
    source = cut(str(event.agent.get("name") or "lifeguard"), SOURCE_CHARS)
    call: Call
    if event.kind in ("incident.opened", "notifier.test"):
        call = "create"
        body: dict[str, Any] = {
            "message": cut(message.first_line, MESSAGE_CHARS),
            "alias": alias,
            "description": cut(message.text(), DESCRIPTION_CHARS),
        }
        if responders:
            body["responders"] = responders
        body |= {
            "tags": _tags(message, event.incident),
            "details": details(message, alias),
            "entity": str(event.incident.get("check") or "") or alias,
            "source": source,
            "priority": PRIORITIES.get(message.severity, "P3"),
            "user": USER,
        }
    else:
        call = "close" if event.kind == "incident.resolved" else "note"
        body = {"user": USER, "source": source, "note": cut(message.text(), NOTE_CHARS)}
    return compact_json({"call": call, "alias": alias, "body": body})


def details(message: Message, incident_id: str) -> dict[str, str]:
    """The alert's extra properties: a map of strings, as Opsgenie takes them."""
    found: dict[str, str] = {"Incident": incident_id}
    found.update(message.facts)
    if message.last_error:
        found["Last error"] = message.last_error
    if message.container_state:
        found["Container state"] = message.container_state
    if message.evidence_url:
        found["Evidence"] = message.evidence_url
    return {key: cut(value, DETAIL_VALUE_CHARS) for key, value in found.items()}


def _tags(message: Message, incident: dict[str, Any]) -> list[str]:
    tags = ["lifeguard", message.sev, message.severity]
    own = incident.get("tags")
    if isinstance(own, list):
        tags += [str(tag) for tag in own]
    unique = [cut(tag, TAG_CHARS) for tag in dict.fromkeys(tags) if tag]
    return unique[:TAGS]


def _unwrap(body: bytes) -> tuple[Call, str, dict[str, Any]]:
    envelope = json.loads(body)
    call = envelope["call"]
    if call not in ("create", "close", "note"):
        raise ValueError(f"unknown Opsgenie call {call!r}")
    return call, str(envelope["alias"]), dict(envelope["body"])


def _explain(body: Any) -> str | None:
    """Opsgenie's own words: its ``message``, then each field it refused (``errors``)."""
    if not isinstance(body, dict):
        return None
    words = str(body["message"]) if isinstance(body.get("message"), str) else ""
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        words += f" ({'; '.join(f'{field}: {reason}' for field, reason in errors.items())})"
    return words.strip() or None


