"""Deliver events to a Slack incoming webhook (or a Mattermost one: its hooks take the same body).

The body has ``text`` (the first line: what notifications and clients without Block Kit show)
and ``blocks``: a header, the facts as section fields, the last error and the container's last
log lines in code blocks, and a button to the evidence when it is reachable. Slack reads
``&``, ``<`` and ``>`` as markup in mrkdwn (``<!channel>``, ``<https://…|a link>``), so every
outside string in mrkdwn is entity-escaped; facts are ``plain_text``, which Slack never parses.

Slack answers ``200 ok``; a rate limit is ``429`` with ``Retry-After``; a hook that is gone,
disabled or pointed at an archived channel answers 4xx with a code word in the body
(``invalid_payload``, ``no_service``, ``channel_not_found``, ``invalid_token``…): dead, since the
same request would get the same answer. 5xx is retried.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from actions.notifiers.base import Delivery
from actions.notifiers.http import Answer, HttpNotifier, Request, classify_answer
from actions.notifiers.message import Message, build_message, compact_json, cut
from agent.config import NotifierConfigBase
from agent.config.types import HttpUrl, Secret

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import Notification

__all__ = ["SLACK_ERRORS", "SlackNotifier", "SlackNotifierConfig", "mrkdwn_escape", "render_slack"]

# Block Kit's limits: a header's text, a field's text, a section's text, a button's URL.
HEADER_CHARS = 150
FIELD_CHARS = 2000
SECTION_CHARS = 3000
URL_CHARS = 3000

SLACK_ERRORS = {
    "invalid_payload": "the body was refused",
    "no_text": "the body was refused",
    "invalid_token": "the webhook's token is not valid",
    "no_service": "the webhook was removed or disabled",
    "no_service_id": "the webhook URL is incomplete",
    "no_team": "the workspace is gone",
    "team_disabled": "the workspace is disabled",
    "channel_not_found": "the channel is gone",
    "channel_is_archived": "the channel is archived",
    "action_prohibited": "an admin restricted posting",
    "posting_to_general_channel_denied": "only admins may post to that channel",
    "user_not_found": "the user is gone",
}
"""Slack's 4xx code words and what they mean for whoever reads the dead delivery."""

_MENTION = re.compile(r"@(?=\w)")


class SlackNotifierConfig(NotifierConfigBase):
    """POST each event to a Slack (or Mattermost) incoming webhook."""

    type: Literal["slack"]
    # The hook's path is its credential: never shown, masked wherever a service echoes it.
    url: Annotated[HttpUrl, Secret]


class SlackNotifier(HttpNotifier[SlackNotifierConfig]):
    """Block Kit messages to ``config.url``."""

    type: ClassVar[str] = "slack"
    config_model = SlackNotifierConfig
    config: SlackNotifierConfig

    def render(self, notification: Notification) -> bytes:
        return render_slack(notification)

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        return Request(str(self.config.url))

    def classify(self, answer: Answer) -> Delivery:
        delivery = classify_answer(answer, self.redact)
        word = answer.text().strip()
        if delivery.outcome == "dead" and word in SLACK_ERRORS:
            return Delivery("dead", f"HTTP {answer.status}: {word} ({SLACK_ERRORS[word]})", status=answer.status)
        return delivery


def render_slack(notification: Notification) -> bytes:
    """The webhook body: compact JSON, the same bytes for the same event."""
    return compact_json(slack_body(build_message(notification)))


def slack_body(message: Message) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(message.first_line, HEADER_CHARS)}},
    ]
    fields = [*message.facts]
    if message.container_state:
        fields.append(("Container state", message.container_state))
    if fields:
        blocks.append({
            "type": "section",
            # plain_text: names, targets and states are shown as written, never parsed as markup.
            "fields": [
                {"type": "plain_text", "text": cut(f"{name}:\n{value}", FIELD_CHARS), "emoji": False}
                for name, value in fields[:10]  # Slack's limit per section
            ],
        })
    if message.last_error:
        blocks.append(_code_section("Last error", [message.last_error]))
    if message.log_lines:
        blocks.append(_code_section("Last log lines", message.log_lines))
    if message.evidence_url and len(message.evidence_url) <= URL_CHARS:
        blocks.append({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Evidence"},
                "url": message.evidence_url,
                "action_id": "evidence",
            }],
        })
    return {
        # The fallback (notifications, Mattermost): mrkdwn, so escaped, and mentions disarmed.
        "text": mrkdwn_escape(message.first_line, mentions=True),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def mrkdwn_escape(text: str, *, mentions: bool = False) -> str:
    """``text`` for Slack mrkdwn: ``&``, ``<``, ``>`` as entities, so no link or mention is parsed.

    ``mentions`` also breaks ``@word`` with a word joiner: Slack itself only pings ``<!channel>``
    (escaped here), but Mattermost, which shows ``text``, pings ``@channel`` and ``@user``.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u2060", text) if mentions else text


def _code_section(title: str, lines: list[str]) -> dict[str, Any]:
    # Inside ``` nothing but the entities is markup; a backtick could close the block, so each
    # becomes a look-alike (U+02CB) and the text reads the same.
    budget = SECTION_CHARS - len(title) - 16
    raw = "\n".join(lines).replace("`", "\u02cb")
    body = mrkdwn_escape(cut(raw, budget))
    if len(body) > budget:  # entities made it longer: cut so that even all-entities fits
        body = mrkdwn_escape(cut(raw, budget // 5))
    return {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n```{body}```"}}

