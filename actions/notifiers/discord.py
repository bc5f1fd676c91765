"""Deliver events to a Discord channel webhook, as one embed.

The embed's title is the first line, its colour says the severity (green once resolved or
healed), its fields are the facts, its description the last error and the container's last log
lines in code blocks, and its link the evidence when it is reachable. Discord reads markdown in
titles, fields and descriptions, so every outside string is backslash-escaped; inside a code
block escapes do not work, so backticks become a look-alike there. ``allowed_mentions`` with an
empty ``parse`` list means no ``@everyone``, role or user in the text ever pings anyone.

Discord answers ``204 No Content``; a rate limit is ``429`` with ``retry_after`` (seconds, a
float) in the JSON body and ``Retry-After`` in the headers; ``400`` is a body it refuses and
``401``/``403``/``404`` a webhook that is gone (``Unknown Webhook``): dead. 5xx is retried.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from actions.notifiers.base import Delivery
from actions.notifiers.http import Answer, HttpNotifier, Request, classify_answer, parse_retry_after, seconds_in
from actions.notifiers.message import Message, build_message, compact_json, cut
from agent.config import NotifierConfigBase
from agent.config.types import HttpUrl, Secret

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import Notification

__all__ = ["COLOURS", "DiscordNotifier", "DiscordNotifierConfig", "markdown_escape", "render_discord"]

# Discord's embed limits.
TITLE_CHARS = 256
FIELD_NAME_CHARS = 256
FIELD_VALUE_CHARS = 1024
DESCRIPTION_CHARS = 4096
MAX_FIELDS = 25

COLOURS = {
    "critical": 0xD83C3E,  # red
    "high": 0xF0883E,  # orange
    "medium": 0xF2C744,  # yellow
    "low": 0x3B82F6,  # blue
}
GOOD = 0x2EA043  # green: resolved, healed
NEUTRAL = 0x9AA0A6  # grey: a test message, an unknown severity

_MARKDOWN = re.compile(r"([\\`*_~|<>#\[\]()@:-])")


class DiscordNotifierConfig(NotifierConfigBase):
    """POST each event to a Discord channel webhook."""

    type: Literal["discord"]
    # The webhook's token is the last segment of its path: never shown, masked wherever echoed.
    url: Annotated[HttpUrl, Secret]


class DiscordNotifier(HttpNotifier[DiscordNotifierConfig]):
    """One embed per event to ``config.url``."""

    type: ClassVar[str] = "discord"
    config_model = DiscordNotifierConfig
    config: DiscordNotifierConfig

    def render(self, notification: Notification) -> bytes:
        return render_discord(notification)

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        return Request(str(self.config.url))

    def classify(self, answer: Answer) -> Delivery:
        delivery = classify_answer(answer, self.redact)
        if delivery.outcome == "delivered" or not 400 <= answer.status < 500:
            return delivery
        body = answer.json()
        if not isinstance(body, dict):
            return delivery
        detail = f"HTTP {answer.status}"
        if isinstance(body.get("message"), str):
            detail += f": {self.redact(body['message'])}"
        if isinstance(body.get("code"), int) and body["code"]:
            detail += f" (code {body['code']})"
        if answer.status == 429:
            # The body's float is more precise than the header's whole seconds.
            wait = seconds_in(body.get("retry_after"))
            if wait is None:
                wait = parse_retry_after(answer.headers.get("Retry-After"), answer.now)
            return Delivery("retry", detail, status=429, retry_after=wait)
        return Delivery(delivery.outcome, detail, status=answer.status, retry_after=delivery.retry_after)


def render_discord(notification: Notification) -> bytes:
    """The webhook body: compact JSON, the same bytes for the same event."""
    return compact_json(discord_body(build_message(notification)))


def discord_body(message: Message) -> dict[str, Any]:
    facts = [*message.facts]
    if message.container_state:
        facts.append(("Container state", message.container_state))
    embed: dict[str, Any] = {
        "title": _escaped(message.first_line, TITLE_CHARS),
        "color": colour(message),
        "fields": [
            {
                "name": cut(name, FIELD_NAME_CHARS),
                "value": _escaped(value, FIELD_VALUE_CHARS) or "-",
                "inline": True,
            }
            for name, value in facts[:MAX_FIELDS]
        ],
    }
    parts = []
    if message.last_error:
        parts.append(("Last error", [message.last_error]))
    if message.log_lines:
        parts.append(("Last log lines", message.log_lines))
    if parts:
        # Shared fairly: each block gets its part of the limit, so the logs cannot crowd out the error.
        budget = DESCRIPTION_CHARS // len(parts) - 40
        embed["description"] = "\n".join(_code_block(title, lines, budget) for title, lines in parts)
    if message.evidence_url and message.evidence_url.startswith(("http://", "https://")):
        embed["url"] = message.evidence_url
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


def colour(message: Message) -> int:
    if message.test:
        return NEUTRAL
    if message.label in ("RESOLVED", "HEALED"):
        return GOOD
    return COLOURS.get(message.severity, NEUTRAL)


def markdown_escape(text: str) -> str:
    """``text`` for Discord markdown: every character that could format, link or mention, escaped."""
    return _MARKDOWN.sub(r"\\\1", text)


def _code_block(title: str, lines: list[str], budget: int) -> str:
    # No escape works inside ``` : a backtick becomes U+02CB (reads the same, closes nothing).
    body = cut("\n".join(lines).replace("`", "\u02cb"), budget)
    return f"**{title}**\n```\n{body}\n```"


def _escaped(text: str, limit: int) -> str:
    """``text`` escaped and cut to ``limit`` characters, never through the middle of an escape."""
    escaped = markdown_escape(text)
    if len(escaped) <= limit:
        return escaped
    keep = limit - 1
    while len(escaped := markdown_escape(text[:keep])) > limit - 1:
        keep -= len(escaped) - (limit - 1)
    return escaped + "…"

