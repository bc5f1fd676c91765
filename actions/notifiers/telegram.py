"""Send each event to a Telegram chat through a bot (``sendMessage``, HTML formatting).

The message is the one every channel shows (``message.build_message``), laid out in the small
HTML subset Telegram parses: the first line in bold, one fact per line, the container's log lines
in ``<pre>``, a link to the evidence when it is public. Every string from outside is escaped
(``&``, ``<``, ``>``), so a check's body cannot add markup. Telegram refuses texts over 4,096
characters, so ``render`` cuts whole parts until the text fits: log lines first (the oldest
first), then the last error, then the longest values; it cuts the plain strings before escaping
them, so a tag or an entity is never split.

The bot token sits in the URL path (``/bot<token>/sendMessage``): it is a ``Secret`` field, so
every detail is masked with it, and so is every log line of the agent.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from actions.notifiers.http import Answer, HttpNotifier, Request, classify_answer, parse_retry_after, seconds_in
from actions.notifiers.message import Message, build_message
from agent.config import NotifierConfigBase
from agent.config.types import After, Before, HttpUrl, Secret, shown_number

if TYPE_CHECKING:  # pragma: no cover
    from actions.notifiers.base import Delivery
    from agent.events import Notification

__all__ = ["MAX_CHARS", "TelegramNotifier", "TelegramNotifierConfig", "render_text"]

MAX_CHARS = 4096
"""Telegram's limit on a message's text, counted here in UTF-16 units of the HTML (the stricter count)."""

ELLIPSIS = "…"
# The bot id, a colon, the secret part: what BotFather hands out.
_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,}")
# A public channel or supergroup by its user name.
_CHAT_NAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{3,31}")
_CHAT_NUMBER = re.compile(r"-?[0-9]{1,20}")
# Telegram answers with these when retrying cannot help: the request or the bot's rights are wrong.
_DEAD_STATUSES = frozenset({400, 401, 403, 404})


def _chat_id(value: Any) -> Any:
    # A chat id from an environment variable arrives as a string: "-1001234567890" is a number.
    if isinstance(value, bool):
        raise ValueError("expected a chat id (a number) or a channel's @name")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _CHAT_NUMBER.fullmatch(text):
            return int(text)
        if _CHAT_NAME.fullmatch(text):
            return text
        raise ValueError(f"invalid chat id {text!r} (expected a number such as -1001234567890, or @channelname)")
    raise ValueError("expected a chat id (a number) or a channel's @name")


def _bot_token(value: str) -> str:
    value = value.strip()
    if not _TOKEN.fullmatch(value):
        # Never echo the value: it is a secret even when it is a malformed one.
        raise ValueError("must be a bot token as BotFather gives it, 123456789:AA… (the value is not shown)")
    return value


def _thread_id(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true/false")
    return value


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more, got {shown_number(value)}")
    return value


class TelegramNotifierConfig(NotifierConfigBase):
    """Send each event to a Telegram chat through a bot."""

    type: Literal["telegram"]
    bot_token: Annotated[str, Secret, After(_bot_token)]
    chat_id: Annotated[int | str, Before(_chat_id)]
    # A topic of a forum supergroup.
    message_thread_id: Annotated[int | None, Before(_thread_id), After(_positive)] = None
    api_url: HttpUrl = "https://api.telegram.org"


class TelegramNotifier(HttpNotifier[TelegramNotifierConfig]):
    """POST each event to ``{api_url}/bot{bot_token}/sendMessage``."""

    type: ClassVar[str] = "telegram"
    config_model = TelegramNotifierConfig
    config: TelegramNotifierConfig

    def private_values(self) -> list[str]:
        # The token is a Secret field already; its secret half and the URL that carries it are
        # masked on their own too, should a proxy or the service echo either back.
        token = self.config.bot_token
        return [self._url(), token, token.partition(":")[2], *super().private_values()]

    def render(self, notification: Notification) -> bytes:
        body: dict[str, Any] = {
            "chat_id": self.config.chat_id,
            "text": render_text(build_message(notification)),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        if self.config.message_thread_id is not None:
            body["message_thread_id"] = self.config.message_thread_id
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        return Request(self._url())

    def classify(self, answer: Answer) -> Delivery:
        """Telegram's answers: ``{"ok": false, "description": …, "parameters": {"retry_after": N}}``."""
        reply = answer.json()
        reply = reply if isinstance(reply, dict) else {}
        if 200 <= answer.status < 300 and reply.get("ok") is not False:
            return classify_answer(answer, self.redact)
        description = reply.get("description")
        if not isinstance(description, str) or not description:
            return classify_answer(answer, self.redact)  # not Telegram speaking: a proxy's page
        from actions.notifiers.base import Delivery

        found = reply.get("parameters")
        parameters: dict[str, Any] = found if isinstance(found, dict) else {}
        detail = f"HTTP {answer.status}: {description}"
        moved = parameters.get("migrate_to_chat_id")
        if isinstance(moved, int) and not isinstance(moved, bool):
            detail += f" (the group is now the supergroup {moved}: set chat_id to it)"
        detail = self.redact(detail)
        if answer.status == 429 or answer.status >= 500:
            wait = seconds_in(parameters.get("retry_after"))
            if wait is None:
                wait = parse_retry_after(answer.headers.get("Retry-After"), answer.now)
            return Delivery("retry", detail, status=answer.status, retry_after=wait)
        if answer.status in _DEAD_STATUSES or 200 <= answer.status < 300:
            return Delivery("dead", detail, status=answer.status)
        return classify_answer(answer, self.redact)

    def _url(self) -> str:
        return f"{self.config.api_url.rstrip('/')}/bot{self.config.bot_token}/sendMessage"


# --- the text: laid out, escaped, cut to fit -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cut:
    """How much of a message a layout keeps."""

    log_lines: int  # the last N log lines
    error_chars: int | None = None  # the last error cut to this many characters (None: whole)
    value_chars: int | None = None  # every other outside string cut to this many characters


def render_text(message: Message, limit: int = MAX_CHARS) -> str:
    """The message as Telegram HTML, at most ``limit`` characters long (UTF-16 units)."""
    cut = _Cut(log_lines=len(message.log_lines))
    text = _layout(message, cut)
    if _size(text) <= limit:
        return text
    # Log lines go first, the oldest first: the last ones say most about the failure.
    while cut.log_lines > 0:
        cut = _Cut(log_lines=cut.log_lines - 1)
        text = _layout(message, cut)
        if _size(text) <= limit:
            return text
    if message.last_error:
        keep = _longest(lambda n: _size(_layout(message, _Cut(0, error_chars=n))) <= limit, len(message.last_error))
        if keep is not None and keep >= min(len(message.last_error), 200):
            return _layout(message, _Cut(0, error_chars=keep))
    # Still too long (a huge title or target): every value is shortened alike, the error with them.
    keep = _longest(lambda n: _size(_layout(message, _Cut(0, n, n))) <= limit, limit)
    return _layout(message, _Cut(0, keep or 0, keep or 0))


def _layout(message: Message, cut: _Cut) -> str:
    def value(text: str, chars: int | None = cut.value_chars) -> str:
        return _escape(_shorten(text, chars))

    lines = [f"<b>{value(message.first_line)}</b>", ""]
    lines += [f"<b>{_escape(name)}:</b> {value(text)}" for name, text in message.facts]
    if message.last_error:
        error_chars = cut.error_chars if cut.value_chars is None else min(cut.error_chars or 0, cut.value_chars)
        lines.append(f"<b>Last error:</b> {value(message.last_error, error_chars)}")
    if message.container_state:
        lines.append(f"<b>Container state:</b> {value(message.container_state)}")
    kept = message.log_lines[len(message.log_lines) - cut.log_lines :] if cut.log_lines else []
    if kept:
        shown = "Last log lines" if len(kept) == len(message.log_lines) else f"Last {len(kept)} log lines"
        body = "\n".join(value(line) for line in kept)
        lines += ["", f"<b>{shown}:</b>", f"<pre>{body}</pre>"]
    if message.evidence_url and (cut.value_chars is None or len(message.evidence_url) <= cut.value_chars):
        # A link cut short leads nowhere: it is shown whole or not at all.
        lines += ["", f'<a href="{html.escape(message.evidence_url, quote=True)}">Evidence</a>']
    return "\n".join(lines)


def _escape(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (undecodable log bytes) would make the body unsendable
        text = text.encode("utf-8", "replace").decode("utf-8")
    return html.escape(text, quote=False)


def _shorten(text: str, chars: int | None) -> str:
    if chars is None or len(text) <= chars:
        return text
    return text[: max(0, chars - 1)] + ELLIPSIS if chars > 0 else ""


def _size(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _longest(fits: Callable[[int], bool], most: int) -> int | None:
    """The largest n in 0..most for which ``fits(n)`` holds (it holds for every smaller n), or None."""
    low, high = 0, most
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
