"""Deliver events to Microsoft Teams through a Workflows webhook, as an Adaptive Card.

The card (version 1.4) has the first line as its title (coloured by severity, green once resolved
or healed), a FactSet of the facts, the last error, the container's last log lines in monospace
and an "Evidence" button when the evidence is reachable. Teams renders a markdown subset in
TextBlocks and facts (bold, italic, lists, links), so every outside string is neutralised:
punctuation that could format is backslash-escaped, as CommonMark reads it.

A Workflows webhook answers ``202 Accepted`` (``200`` from some flows); ``429`` is a rate limit
(``Retry-After``); other 4xx are a flow that is gone, disabled or refuses the body
(``{"error": {"code", "message"}}``): dead. 5xx is retried.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from actions.notifiers.base import Delivery
from actions.notifiers.http import Answer, HttpNotifier, Request, classify_answer
from actions.notifiers.message import Message, build_message, compact_json
from agent.config import NotifierConfigBase
from agent.config.types import HttpUrl, Secret

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import Notification

__all__ = ["TeamsNotifier", "TeamsNotifierConfig", "card", "markdown_escape", "render_teams"]

CARD_VERSION = "1.4"
TEXT_CHARS = 2000  # per block: a card stays well under Teams' 28 KB message limit

_PUNCTUATION = re.compile(r"([\\`*_~\[\]()<>#|!])")
_LIST_MARKER = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s|$)", re.MULTILINE)


class TeamsNotifierConfig(NotifierConfigBase):
    """POST each event to a Teams Workflows webhook."""

    type: Literal["teams"]
    # The URL's ``sig`` parameter is its credential: never shown, masked wherever echoed.
    url: Annotated[HttpUrl, Secret]


class TeamsNotifier(HttpNotifier[TeamsNotifierConfig]):
    """One Adaptive Card per event to ``config.url``."""

    type: ClassVar[str] = "teams"
    config_model = TeamsNotifierConfig
    config: TeamsNotifierConfig

    def render(self, notification: Notification) -> bytes:
        return render_teams(notification)

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        return Request(str(self.config.url))

    def classify(self, answer: Answer) -> Delivery:
        delivery = classify_answer(answer, self.redact)
        body = answer.json()
        if delivery.outcome == "delivered" or not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return delivery
        error = body["error"]
        said = ": ".join(str(error[key]) for key in ("code", "message") if isinstance(error.get(key), str))
        if not said:
            return delivery
        return Delivery(
            delivery.outcome, f"HTTP {answer.status}: {self.redact(said)}",
            status=answer.status, retry_after=delivery.retry_after,
        )


def render_teams(notification: Notification) -> bytes:
    """The webhook body: compact JSON, the same bytes for the same event."""
    body = {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": card(build_message(notification)),
        }],
    }
    return compact_json(body)


def card(message: Message) -> dict[str, Any]:
    """The Adaptive Card of one message."""
    body: list[dict[str, Any]] = [{
        "type": "TextBlock",
        "text": _text(message.first_line),
        "weight": "Bolder",
        "size": "Medium",
        "color": colour(message),
        "wrap": True,
    }]
    facts = [*message.facts]
    if message.container_state:
        facts.append(("Container state", message.container_state))
    if facts:
        body.append({"type": "FactSet", "facts": [{"title": name, "value": _text(value)} for name, value in facts]})
    if message.last_error:
        body.append(_heading("Last error"))
        body.append({"type": "TextBlock", "text": _text(message.last_error), "wrap": True, "spacing": "Small"})
    if message.log_lines:
        body.append(_heading("Last log lines"))
        # One block per line: markdown would fold single newlines into one paragraph.
        body += [
            {"type": "TextBlock", "text": _text(line) or " ", "fontType": "Monospace", "size": "Small",
             "wrap": True, "spacing": "None"}
            for line in message.log_lines
        ]
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if message.evidence_url:
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Evidence", "url": message.evidence_url}]
    return content


def colour(message: Message) -> str:
    if message.test:
        return "Default"
    if message.label in ("RESOLVED", "HEALED"):
        return "Good"
    return {"critical": "Attention", "high": "Attention", "medium": "Warning", "low": "Accent"}.get(
        message.severity, "Default"
    )


def markdown_escape(text: str) -> str:
    """``text`` for an Adaptive Card TextBlock: no emphasis, link, code, list or heading survives."""
    text = _PUNCTUATION.sub(r"\\\1", text)
    return _LIST_MARKER.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def _heading(title: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": title, "weight": "Bolder", "wrap": True, "spacing": "Medium"}


def _text(value: str) -> str:
    if len(value) > TEXT_CHARS:
        value = value[: TEXT_CHARS - 1] + "…"  # cut before escaping: an escape is never split
    return markdown_escape(value)
