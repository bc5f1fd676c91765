"""Deliver events to an HTTP endpoint, signed the Standard Webhooks way.

Receivers de-duplicate by ``webhook-id`` (the event id, the same on every retry) and reject
replays by ``webhook-timestamp`` (the time of this attempt, so a retry an hour later still
verifies). One ``send()`` is one POST; its outcome is classified so the outbox knows whether
trying again can help: 2xx delivered; no answer, 408, 429 and 5xx retry; any other status,
redirects included, is dead, because the same request would get the same answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

import agent
from actions.notifiers.base import Delivery, HttpSessionFactory, Notifier
from agent import payload
from agent.config import NotifierConfigBase
from agent.config.types import HttpHeaders, HttpUrl, Secret, empty_is_none, one_credential
from agent.durations import format_duration
from agent.neterrors import describe_os_error
from agent.redact import url_secrets, value_masker
from agent.signing import PREFIX as SECRET_PREFIX
from agent.signing import decode_secret, sign_with_key

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp
    from multidict import CIMultiDict

    from agent.events import Notification

USER_AGENT = f"lifeguard/{agent.__version__}"
_DETAIL_BODY_CHARS = 200
# Enough of an error body for the detail; a 2xx body is read the same way so the
# connection can go back to the pool without a huge reply filling memory.
_READ_LIMIT = 4096
_RETRY_STATUSES = frozenset({408, 429})


class WebhookNotifierConfig(NotifierConfigBase):
    """POST each event as signed JSON (Standard Webhooks)."""

    type: Literal["webhook"]
    url: HttpUrl = Field(repr=False)  # chat webhook URLs carry their credential in the path
    secret: Annotated[str | None, BeforeValidator(empty_is_none), Secret] = Field(None, repr=False)
    headers: Annotated[HttpHeaders, Secret] = Field(default_factory=dict, repr=False)

    @field_validator("headers")
    @classmethod
    def _one_credential(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return one_credential(info.data.get("url"), value)

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            decode_secret(value)  # the same rule the webhook notifier signs with
        except ValueError:
            # Never echo the value: it is a secret even when it is a malformed one.
            raise ValueError("must be 'whsec_' followed by base64 (the value is not shown)") from None
        return value


class WebhookNotifier(Notifier[WebhookNotifierConfig]):
    """POST each event as JSON to ``config.url``."""

    type: ClassVar[str] = "webhook"
    config_model = WebhookNotifierConfig
    needs = frozenset({"http"})
    config: WebhookNotifierConfig

    def __init__(
        self,
        config: WebhookNotifierConfig,
        http: HttpSessionFactory,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, http)
        self._clock = clock
        self._url = str(config.url)  # a validated URL type may not be a plain str
        secret = config.secret
        # Decoded once, up front: a malformed secret is a config error, reported at start.
        self._key: bytes | None = decode_secret(secret) if secret else None
        self._extra_headers: dict[str, str] = dict(config.headers)
        # Details are logged and stored, and a receiver may echo the request back in an error
        # body: mask what must stay private (URL tokens, auth headers, the secret itself).
        private = [self._url, *url_secrets(self._url), *self._extra_headers.values()]
        if secret:
            private += [secret, secret.removeprefix(SECRET_PREFIX)]
        self._redact = value_masker(private)

    def render(self, notification: Notification) -> bytes:
        return render_json(notification)

    async def send(self, event_id: str, body: bytes) -> Delivery:
        try:
            return await self._post(event_id, body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the outbox needs a verdict, never an exception
            return _classify_error(exc, self.config.timeout, self._redact)

    async def _post(self, event_id: str, body: bytes) -> Delivery:
        import aiohttp

        timeout = float(self.config.timeout)
        now = self._clock()  # read once: it stamps the attempt and anchors a Retry-After date
        headers = self._headers(event_id, body, int(now))
        # Both bounds: ClientTimeout keeps aiohttp's own pool honest, asyncio.timeout also
        # covers reading the reply, so a receiver that trickles bytes cannot hold us.
        async with asyncio.timeout(timeout):
            async with self._http().post(
                self._url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                head = await resp.content.read(_READ_LIMIT)
                return _classify_response(resp, head, now, self._redact)

    def _headers(self, event_id: str, body: bytes, timestamp: int) -> CIMultiDict[str]:
        from multidict import CIMultiDict

        headers: CIMultiDict[str] = CIMultiDict({"User-Agent": USER_AGENT})
        for key, value in self._extra_headers.items():
            headers[key] = value  # replaces case-insensitively, so a configured User-Agent wins
        # The protocol's own headers come last: configured ones must not override them.
        headers["Content-Type"] = "application/json"
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(timestamp)
        if self._key is not None:
            headers["webhook-signature"] = sign_with_key(self._key, event_id, timestamp, body)
        else:
            headers.popall("webhook-signature", None)
        return headers


def render_json(notification: Notification) -> bytes:
    """The signed body: the ``lifeguard.incident/v1`` document as compact JSON."""
    return json.dumps(payload.event_document(notification), separators=(",", ":")).encode()


def _classify_response(
    resp: aiohttp.ClientResponse, head: bytes, now: float, redact: Callable[[str], str]
) -> Delivery:
    status = resp.status
    if 200 <= status < 300:
        return Delivery("delivered", f"HTTP {status}", status=status)
    if 300 <= status < 400:
        where = resp.headers.get("Location")
        detail = f"HTTP {status}: redirect not followed"
        if where:
            detail += f" (Location: {_shorten(where, redact)})"
        return Delivery("dead", detail, status=status)
    detail = f"HTTP {status}"
    text = _shorten(head.decode("utf-8", errors="replace"), redact)
    if text:
        detail += f": {text}"
    if status >= 500 or status in _RETRY_STATUSES:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
        return Delivery("retry", detail, status=status, retry_after=retry_after)
    return Delivery("dead", detail, status=status)


def _classify_error(exc: Exception, timeout: float, redact: Callable[[str], str]) -> Delivery:
    import aiohttp

    # Order matters: aiohttp's timeout errors are also ClientErrors, InvalidURL is also a ValueError.
    if isinstance(exc, TimeoutError):
        return Delivery("retry", f"timed out after {format_duration(timeout)}")
    if isinstance(exc, aiohttp.InvalidURL):
        # The URL is not echoed: webhook URLs often carry a token in their path.
        return Delivery("dead", "invalid webhook URL")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Delivery("retry", redact(describe_os_error(exc.os_error)))
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return Delivery("retry", _exc_detail(exc, redact))
    # An unknown failure may well be transient; the outbox's give_up_after still bounds it.
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


def _exc_detail(exc: BaseException, redact: Callable[[str], str]) -> str:
    text = _shorten(str(exc), redact)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shorten(text: str, redact: Callable[[str], str]) -> str:
    # Redact before cutting, so a private value cut in half at the limit cannot slip through.
    return redact(" ".join(text.split()))[:_DETAIL_BODY_CHARS]
