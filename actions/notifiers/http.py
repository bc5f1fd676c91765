"""What every notifier that speaks HTTP shares: one POST per attempt, bounded, classified.

A channel (the webhook, Slack, PagerDuty…) subclasses ``HttpNotifier``: ``render`` makes its body
from the event (pure), ``request`` says where and with which headers it goes, and ``classify`` reads
the service's answer where it differs from the common rule — 2xx delivered; no answer, 408, 429 and
5xx retry (honouring ``Retry-After``); any other status, redirects included, dead, because the same
request would get the same answer. Every detail the outbox logs and stores is masked with the
notifier's secrets (its ``Secret`` fields, the credentials in its URLs) and cut to 200 characters.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import agent
from actions.notifiers.base import Delivery, HttpSessionFactory, Notifier
from agent.config import NotifierConfigBase
from agent.durations import format_duration
from agent.neterrors import describe_os_error
from agent.redact import url_secrets, value_masker

if TYPE_CHECKING:  # pragma: no cover
    from multidict import CIMultiDictProxy

USER_AGENT = f"lifeguard/{agent.__version__}"
DETAIL_CHARS = 200
# Enough of an error body for the detail; a 2xx body is read the same way so the connection
# can go back to the pool without a huge reply filling memory.
READ_LIMIT = 4096
RETRY_STATUSES = frozenset({408, 429})
# A path segment this long in a secret URL is a credential (Slack's, Discord's, Teams').
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_\-]{16,}")

ConfigT = TypeVar("ConfigT", bound=NotifierConfigBase, covariant=True)


@dataclass(frozen=True, slots=True)
class Request:
    """Where one attempt goes and with what."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    content_type: str = "application/json"
    # What goes on the wire when it is not the rendered body as is: a credential added at each
    # attempt (so it is never frozen into the store), or a rendered envelope unwrapped.
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What the service said: status, headers and the first bytes of the body."""

    status: int
    headers: CIMultiDictProxy[str]
    head: bytes
    now: float  # when the attempt was made (anchors an HTTP-date Retry-After)

    def text(self) -> str:
        return self.head.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (or was cut at the read limit)."""
        import json

        try:
            return json.loads(self.head)
        except ValueError:
            return None


class HttpNotifier(Notifier[ConfigT]):
    """Base of the notifiers that POST to a service. Subclasses implement ``render`` and ``request``."""

    needs = frozenset({"http"})

    def __init__(self, config: ConfigT, http: HttpSessionFactory, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(config, http)
        self._clock = clock
        self._redact = value_masker(self.private_values())

    def private_values(self) -> list[str]:
        """What must never appear in a detail: the config's secrets and the tokens in its URLs."""
        from agent.plugins import secret_values

        found = secret_values(self.config)
        for value in list(found):
            if "://" in value:
                path = value.split("://", 1)[1].partition("/")[2].partition("?")[0]
                found += _TOKEN_SEGMENT.findall(path)
        return found

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        """Where this attempt goes (and its headers); pure."""
        raise NotImplementedError

    def classify(self, answer: Answer) -> Delivery:
        """The outcome of one answer; subclasses refine it with the service's own error bodies."""
        return classify_answer(answer, self.redact)

    def redact(self, text: str) -> str:
        """``text`` masked and flattened to one line of at most 200 characters, for a detail."""
        # Masked before it is cut, so a private value cut in half at the limit cannot slip through.
        return self._redact(" ".join(text.split()))[:DETAIL_CHARS]

    async def send(self, event_id: str, body: bytes) -> Delivery:
        try:
            return await self._attempt(event_id, body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the outbox needs a verdict, never an exception
            return classify_error(exc, self.config.timeout, self.redact)

    async def _attempt(self, event_id: str, body: bytes) -> Delivery:
        import aiohttp

        timeout = float(self.config.timeout)
        now = self._clock()  # read once: it stamps the attempt and anchors a Retry-After date
        request = self.request(event_id, body, now)
        from multidict import CIMultiDict

        headers: CIMultiDict[str] = CIMultiDict({"User-Agent": USER_AGENT})
        for name, value in request.headers.items():
            headers[name] = value  # replaces case-insensitively: a configured User-Agent wins
        if request.content_type:
            headers["Content-Type"] = request.content_type  # the channel's own, whatever is configured
        # Both bounds: ClientTimeout keeps aiohttp's own pool honest, asyncio.timeout also covers
        # reading the reply, so a service that trickles bytes cannot hold us.
        async with asyncio.timeout(timeout):
            async with self._http().request(
                request.method,
                as_sent(request.url),
                data=body if request.body is None else request.body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                head = await resp.content.read(READ_LIMIT)
                return self.classify(Answer(resp.status, resp.headers, head, now))


def as_sent(url: str) -> Any:
    """``url`` exactly as configured when it is already a valid encoded URL, else as aiohttp reads it.

    aiohttp would otherwise re-quote it and decode ``%2F`` in the query: a signed URL (a Teams
    Workflows hook's ``sp=%2Ftriggers%2F…&sig=…``) must reach the service byte for byte.
    """
    if url.isascii() and url.isprintable() and " " not in url:
        from yarl import URL

        return URL(url, encoded=True)
    return url


def classify_answer(answer: Answer, redact: Callable[[str], str]) -> Delivery:
    """The common rule: 2xx delivered; 408, 429, 5xx retry; redirects and other 4xx dead."""
    status = answer.status
    if 200 <= status < 300:
        return Delivery("delivered", f"HTTP {status}", status=status)
    if 300 <= status < 400:
        where = answer.headers.get("Location")
        detail = f"HTTP {status}: redirect not followed"
        if where:
            detail += f" (Location: {redact(where)})"
        return Delivery("dead", detail, status=status)
    detail = f"HTTP {status}"
    text = redact(answer.text())
    if text:
        detail += f": {text}"
    if status >= 500 or status in RETRY_STATUSES:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), answer.now)
        return Delivery("retry", detail, status=status, retry_after=retry_after)
    return Delivery("dead", detail, status=status)


def with_explanation(
    delivery: Delivery, answer: Answer, explain: Callable[[Any], str | None], redact: Callable[[str], str]
) -> Delivery:
    """A refused delivery whose detail is the service's own words (``explain`` reads its JSON body)."""
    if delivery.outcome == "delivered":
        return delivery
    explained = explain(answer.json())
    if not explained:
        return delivery
    return replace(delivery, detail=redact(f"HTTP {answer.status}: {explained}"))


def classify_error(exc: Exception, timeout: float, redact: Callable[[str], str]) -> Delivery:
    """An attempt that got no answer: retried (the outbox's ``give_up_after`` bounds it)."""
    import aiohttp

    # Order matters: aiohttp's timeout errors are also ClientErrors, InvalidURL is also a ValueError.
    if isinstance(exc, TimeoutError):
        return Delivery("retry", f"timed out after {format_duration(timeout)}")
    if isinstance(exc, aiohttp.InvalidURL):
        # The URL is not echoed: service URLs often carry a token in their path.
        return Delivery("dead", "invalid URL")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Delivery("retry", redact(describe_os_error(exc.os_error)))
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return Delivery("retry", _exc_detail(exc, redact))
    return Delivery("retry", f"unexpected error: {_exc_detail(exc, redact)}")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        return None
    return max(0.0, when.timestamp() - now)


def seconds_in(value: Any) -> float | None:
    """A wait a service put in its JSON body (Discord's ``retry_after``, Telegram's), if sane."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _exc_detail(exc: BaseException, redact: Callable[[str], str]) -> str:
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "Answer",
    "HttpNotifier",
    "Request",
    "as_sent",
    "classify_answer",
    "classify_error",
    "parse_retry_after",
    "seconds_in",
    "url_secrets",
]
