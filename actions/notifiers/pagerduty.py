"""Page through PagerDuty's Events API v2: one alert per incident, triggered and resolved.

Every event of an incident carries the same ``dedup_key`` (the incident id), so PagerDuty keeps
one alert for it: ``incident.opened`` triggers it, heal events and escalations are triggers with
the same key (PagerDuty adds them to that alert's log instead of paging again), and
``incident.resolved`` resolves it. Any later kind of event is a trigger too, so nothing is lost.

``render`` makes the event without its ``routing_key``: the body is frozen into the store at the
first attempt, and a credential does not belong there. ``request`` adds the configured key at each
attempt, so a rotated key also applies to events already queued.

PagerDuty's answers: ``202`` accepted (delivered); ``400`` an invalid event (dead: the same event
would be refused again; its ``errors`` go into the detail); ``429`` and ``5xx`` retried.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from actions.notifiers.http import Answer, HttpNotifier, Request, classify_answer, with_explanation
from actions.notifiers.message import Message, build_message, compact_json, cut
from agent.config import NotifierConfigBase
from agent.config.types import HttpUrl, NonEmptyStr, Secret
from agent.timefmt import iso

if TYPE_CHECKING:  # pragma: no cover
    from actions.notifiers.base import Delivery
    from agent.events import Notification

__all__ = ["PagerDutyNotifier", "PagerDutyNotifierConfig", "render_event"]

SUMMARY_CHARS = 1024  # PagerDuty's limit on payload.summary
SEVERITIES = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


class PagerDutyNotifierConfig(NotifierConfigBase):
    """Trigger and resolve one PagerDuty alert per incident (Events API v2)."""

    type: Literal["pagerduty"]
    routing_key: Annotated[NonEmptyStr, Secret]  # the integration key
    url: HttpUrl = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyNotifier(HttpNotifier[PagerDutyNotifierConfig]):
    """POST each event to the Events API v2 with the incident id as its ``dedup_key``."""

    type: ClassVar[str] = "pagerduty"
    config_model = PagerDutyNotifierConfig
    config: PagerDutyNotifierConfig

    def render(self, notification: Notification) -> bytes:
        return render_event(notification)

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        event = json.loads(body)
        wire = {"routing_key": self.config.routing_key, **event}
        return Request(str(self.config.url), body=compact_json(wire))

    def classify(self, answer: Answer) -> Delivery:
        return with_explanation(classify_answer(answer, self.redact), answer, _explain, self.redact)


def render_event(notification: Notification) -> bytes:
    """The Events API v2 event, less its ``routing_key`` (added at each attempt)."""
    event = notification.event
    dedup_key = event.incident_id
    if event.kind == "incident.resolved":
        return compact_json({"event_action": "resolve", "dedup_key": dedup_key})
    message = build_message(notification)
    incident = event.incident
    payload: dict[str, Any] = {
        "summary": cut(message.first_line, SUMMARY_CHARS),
        "source": str(event.agent.get("name") or "lifeguard"),
        "severity": SEVERITIES.get(message.severity, "error"),
        "timestamp": iso(event.occurred_at),
    }
    if incident.get("check"):
        payload["component"] = str(incident["check"])
    if incident.get("container"):
        payload["group"] = str(incident["container"])
    if incident.get("check_type"):
        payload["class"] = str(incident["check_type"])
    payload["custom_details"] = custom_details(message, dedup_key)
    document: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
        "client": "Lifeguard",
    }
    if message.evidence_url:
        document["client_url"] = message.evidence_url
        document["links"] = [{"href": message.evidence_url, "text": "Evidence bundle"}]
    return compact_json(document)


def custom_details(message: Message, incident_id: str) -> dict[str, Any]:
    """The evidence summary PagerDuty shows under the alert, one labelled value each."""
    details: dict[str, Any] = {"Event": message.label, "Incident": incident_id}
    details.update(message.facts)
    if message.last_error:
        details["Last error"] = message.last_error
    if message.container_state:
        details["Container state"] = message.container_state
    if message.log_lines:
        details["Last log lines"] = list(message.log_lines)
    if message.evidence_url:
        details["Evidence"] = message.evidence_url
    return details


def _explain(body: Any) -> str | None:
    """PagerDuty's own words from an error body: ``invalid event: Event object is invalid (…)``."""
    if not isinstance(body, dict):
        return None
    words = ": ".join(str(body[key]) for key in ("status", "message") if isinstance(body.get(key), str) and body[key])
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        words += f" ({'; '.join(str(error) for error in errors)})"
    return words.strip() or None


