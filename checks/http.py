"""The ``http`` check: one request to a URL, judged on status, body and latency.

It runs at high rates (1,000 targets a second on one core), so everything that can be decided
once is decided in ``__init__``, every probe reuses the shared keep-alive session, and no probe
downloads more than ``BODY_READ_LIMIT`` bytes whatever the target sends back.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from agent.config import CheckConfigBase, ConfigModel
from agent.config.types import HttpHeaders, HttpUrl, PositiveDuration, Secret, one_credential, upper
from agent.neterrors import describe_os_error
from agent.redact import redact_url
from checks.base import Check, CheckContext, Outcome

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

BODY_READ_LIMIT = 64 * 1024
"""Bytes of body read at most; ``body_contains`` searches only these."""

BODY_EVIDENCE_LIMIT = 4 * 1024
"""Bytes of body kept in ``details["response"]`` for the evidence bundle."""

MAX_REDIRECTS = 5
"""Redirects followed at most; one more fails the check."""

_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)


class Expect(ConfigModel):
    """What an HTTP response must look like to pass (default: any 2xx)."""

    status: list[int | str] | None = None
    body_contains: str | None = None
    max_latency: PositiveDuration | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _statuses(cls, value: object) -> object:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("must list at least one status")
        return [_status(item) for item in items]


_STATUS_CODE = re.compile(r"[0-9]{3}")


def _status(item: object) -> int | str:
    """The one parser of a status: a code (``200``, ``"200"``) or a class (``"2xx"``, lower case)."""
    if isinstance(item, str) and _STATUS_CODE.fullmatch(item.strip()):  # not isdigit(): '²' is a digit
        item = int(item)
    if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
        return item
    if isinstance(item, str) and _STATUS_CLASS.match(item.strip()):
        return item.strip().lower()
    raise ValueError(f"invalid status {item!r} (expected a code like 200 or a class like '2xx')")


class HttpCheckConfig(CheckConfigBase):
    """Request a URL; pass on a 2xx or on what ``expect`` asks for."""

    type: Literal["http"]
    url: HttpUrl
    method: Annotated[
        Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], BeforeValidator(upper)
    ] = "GET"
    headers: Annotated[HttpHeaders, Secret] = Field(default_factory=dict, repr=False)
    verify_tls: bool = True
    expect: Expect | None = None

    @field_validator("headers")
    @classmethod
    def _one_credential(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return one_credential(info.data.get("url"), value)


class HttpCheck(Check[HttpCheckConfig]):
    """Requests ``config.url`` and passes on a 2xx, or on what ``config.expect`` asks for."""

    type: ClassVar[str] = "http"
    config_model = HttpCheckConfig
    needs = frozenset({"http"})

    def __init__(self, config: HttpCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        import aiohttp

        self._method: str = config.method.upper()
        # Shown and stored everywhere (incidents, API, payloads): never the URL's credentials.
        self._target = redact_url(config.url)
        self._headers: dict[str, str] | None = dict(config.headers) if config.headers else None
        self._ssl: bool = bool(config.verify_tls)
        # The check's own timeout (enforced by Check.run) is the only one: aiohttp's defaults
        # (30 s connect, 300 s total) would otherwise fire first with a misleading message.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)
        expect = config.expect
        statuses = expect.status if expect is not None else None
        self._statuses, self._status_classes = _parse_statuses(statuses)
        needle = expect.body_contains if expect is not None else None
        self._needle: str | None = needle or None
        self._needle_bytes: bytes | None = needle.encode("utf-8") if needle else None
        self._max_latency: float | None = expect.max_latency if expect is not None else None

    @property
    def target(self) -> str:
        return self._target

    async def probe(self) -> Outcome:
        import aiohttp

        t0 = time.monotonic()
        try:
            resp = await self.context.http.request(
                self._method,
                self.config.url,
                headers=self._headers,
                ssl=self._ssl,
                timeout=self._timeout,
                allow_redirects=True,
                # aiohttp raises on the Nth redirect response, having followed N-1 of them.
                max_redirects=MAX_REDIRECTS + 1,
            )
        except aiohttp.TooManyRedirects as exc:
            return Outcome(False, "too many redirects", {"redirects": [str(r.url) for r in exc.history]})
        except aiohttp.ClientError as exc:
            return Outcome(False, _describe_client_error(exc))
        try:
            body, at_eof = await _read_capped(resp)
        except aiohttp.ClientError as exc:
            resp.close()
            return Outcome(False, f"HTTP {resp.status}: {_describe_client_error(exc)}")
        except BaseException:  # timed out or cancelled mid-body: do not leak the connection
            resp.close()
            raise
        else:
            if at_eof:
                resp.release()  # whole body read: the connection goes back to the pool
            else:
                resp.close()  # drop the connection so the rest of the body is never downloaded
        latency = time.monotonic() - t0

        status = resp.status
        details = {"response": _response_details(resp, body, at_eof)}
        if not self._status_ok(status):
            return Outcome(False, f"HTTP {status}", details)
        problems: list[str] = []
        if self._needle_bytes is not None and self._needle_bytes not in body:
            problems.append(f"body does not contain {self._needle!r}")
        if self._max_latency is not None and latency > self._max_latency:
            problems.append(f"latency {latency:.2f}s over {self._max_latency:g}s")
        if problems:
            return Outcome(False, f"HTTP {status}: {'; '.join(problems)}", details)
        return Outcome(True, f"HTTP {status}", details)

    def _status_ok(self, status: int) -> bool:
        if self._statuses is None:
            return 200 <= status < 300
        return status in self._statuses or status // 100 in self._status_classes


def _parse_statuses(statuses: list[int | str] | None) -> tuple[frozenset[int] | None, frozenset[int]]:
    """Split ``expect.status`` (already parsed by ``_status``) into codes and classes; None means 2xx."""
    if not statuses:
        return None, frozenset()
    codes = frozenset(item for item in statuses if isinstance(item, int))
    classes = frozenset(int(item[0]) for item in statuses if isinstance(item, str))  # "2xx" -> 2
    return codes, classes


async def _read_capped(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Read at most ``BODY_READ_LIMIT`` bytes; say whether that was the whole body."""
    content = resp.content
    chunks: list[bytes] = []
    size = 0
    while size < BODY_READ_LIMIT:
        chunk = await content.read(BODY_READ_LIMIT - size)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), content.at_eof()


def _response_details(resp: aiohttp.ClientResponse, body: bytes, at_eof: bool) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for key, value in resp.headers.items():
        # Repeated headers (Set-Cookie, Via) are joined rather than silently dropped.
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return {
        "url": str(resp.url),
        "status": resp.status,
        "headers": headers,
        "body": body[:BODY_EVIDENCE_LIMIT].decode("utf-8", "replace"),
        "body_truncated": len(body) > BODY_EVIDENCE_LIMIT or not at_eof,
    }


def _describe_client_error(exc: Exception) -> str:
    """A one-line reason for an aiohttp error, in the words an operator would use."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or str(cert_error)
        return f"TLS error: certificate verify failed: {reason}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error: {_ssl_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror) or _is_dns_error(exc):
            return "cannot resolve host"
        if isinstance(os_error, ssl.SSLError):
            return f"TLS error: {_ssl_reason(os_error)}"
        return _describe_os_error(os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientOSError):
        return _describe_os_error(exc)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"bad response body: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad response: {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _is_dns_error(exc: Exception) -> bool:
    import aiohttp

    dns_error = getattr(aiohttp, "ClientConnectorDNSError", None)  # aiohttp >= 3.10
    return dns_error is not None and isinstance(exc, dns_error)


def _ssl_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    return str(error) or type(error).__name__


def _describe_os_error(error: OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {_ssl_reason(error)}"
    return describe_os_error(error)
