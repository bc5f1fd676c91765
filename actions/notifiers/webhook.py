"""Deliver events to an HTTP endpoint, signed the Standard Webhooks way.

Receivers de-duplicate by ``webhook-id`` (the event id, the same on every retry) and reject
replays by ``webhook-timestamp`` (the time of this attempt, so a retry an hour later still
verifies). One ``send()`` is one POST; its outcome is classified so the outbox knows whether
trying again can help: 2xx delivered; no answer, 408, 429 and 5xx retry; any other status,
redirects included, is dead, because the same request would get the same answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from multidict import CIMultiDict

from actions.notifiers.base import HttpSessionFactory, repr_without
from actions.notifiers.http import USER_AGENT, HttpNotifier, Request, parse_retry_after
from agent import payload
from agent.config import NotifierConfigBase
from agent.config.model import field
from agent.config.types import After, Before, HttpHeaders, HttpUrl, KeyedError, Secret, empty_is_none, one_credential
from agent.redact import url_secrets
from agent.signing import PREFIX as SECRET_PREFIX
from agent.signing import decode_secret, sign_with_key

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import Notification

__all__ = ["USER_AGENT", "WebhookNotifier", "WebhookNotifierConfig", "parse_retry_after", "render_json"]


def _standard_webhooks_secret(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        decode_secret(value)  # the same rule the webhook notifier signs with
    except ValueError:
        # Never echo the value: it is a secret even when it is a malformed one.
        raise ValueError("must be 'whsec_' followed by base64 (the value is not shown)") from None
    return value


class WebhookNotifierConfig(NotifierConfigBase):
    """POST each event as signed JSON (Standard Webhooks)."""

    type: Literal["webhook"]
    url: HttpUrl  # chat webhook URLs carry their credential in the path: not in reprs
    secret: Annotated[str | None, Before(empty_is_none), Secret, After(_standard_webhooks_secret)] = None
    headers: Annotated[HttpHeaders, Secret] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            one_credential(self.url, self.headers)
        except KeyedError as exc:
            raise KeyedError(("headers", *exc.at(())), exc.text) from None

    def __repr__(self) -> str:
        return repr_without(self, "url")


class WebhookNotifier(HttpNotifier[WebhookNotifierConfig]):
    """POST each event as JSON to ``config.url``, signed when ``secret`` is set."""

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
        # Decoded once, up front: a malformed secret is a config error, reported at start.
        self._key: bytes | None = decode_secret(config.secret) if config.secret else None
        super().__init__(config, http, clock=clock)

    def private_values(self) -> list[str]:
        # A receiver may echo the request back in an error body: the URL (and its tokens), the
        # headers' values and the secret (with and without its prefix) are masked in details.
        url = str(self.config.url)
        private = [url, *url_secrets(url), *super().private_values()]
        if self.config.secret:
            private.append(self.config.secret.removeprefix(SECRET_PREFIX))
        return private

    def render(self, notification: Notification) -> bytes:
        return render_json(notification)

    def request(self, event_id: str, body: bytes, now: float) -> Request:
        headers: CIMultiDict[str] = CIMultiDict(self.config.headers)
        # The protocol's own headers come last: configured ones must not override them.
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(int(now))
        if self._key is not None:
            headers["webhook-signature"] = sign_with_key(self._key, event_id, int(now), body)
        else:
            headers.popall("webhook-signature", None)
        return Request(str(self.config.url), dict(headers))


def render_json(notification: Notification) -> bytes:
    """The signed body: the ``lifeguard.incident/v1`` document as compact JSON."""
    return json.dumps(payload.event_document(notification), separators=(",", ":")).encode()
