"""The ``http`` check: one request to a URL, judged on its status, or on ``expect`` and ``conditions``.

It runs at high rates (1,000 targets a second on one core), so everything that can be decided
once is decided in ``__init__``, every probe reuses the shared keep-alive session, and no probe
downloads more than ``BODY_READ_LIMIT`` bytes whatever the target sends back.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import structlog

from agent.config import CheckConfigBase, ConfigModel
from agent.config.model import Before, KeyedError, field
from agent.config.types import HttpHeaders, HttpUrl, PositiveDuration, Secret, one_credential, upper
from agent.neterrors import describe_os_error
from agent.redact import redact_url
from checks.base import Check, CheckContext, Outcome
from checks.certs import CaFile, client_context, days_left, read_dates
from checks.conditions import (
    Baseline,
    Condition,
    DurationValue,
    HttpCondition,
    Observed,
    Subject,
    Verdict,
    evaluate,
    failure_message,
)
from checks.http_lean import REDIRECTS, ConnectFailed, LeanRequest, lean_request

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp
    from yarl import URL

BODY_READ_LIMIT = 64 * 1024
"""Bytes of body read at most; ``body_contains`` searches only these."""

BODY_EVIDENCE_LIMIT = 4 * 1024
"""Bytes of body kept in ``details["response"]`` for the evidence bundle."""

MAX_REDIRECTS = 5
"""Redirects followed at most; one more fails the check."""

LEAN = True
"""Plain http:// checks take the lean client (checks/http_lean.py); False: every check takes aiohttp's."""

_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)

log = structlog.get_logger("lifeguard.checks.http")


def _statuses(value: object) -> object:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must list at least one status")
    return [_status(item) for item in items]


class Expect(ConfigModel):
    """What an HTTP response must look like to pass (default: any 2xx)."""

    status: Annotated[list[int | str] | None, Before(_statuses)] = None
    body_contains: str | None = None
    max_latency: PositiveDuration | None = None


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
    method: Annotated[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], Before(upper)] = "GET"
    headers: Annotated[HttpHeaders, Secret] = field(default_factory=dict)
    verify_tls: bool = True
    ca_file: CaFile | None = None
    expect: Expect | None = None
    conditions: list[HttpCondition] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            one_credential(self.url, self.headers)
        except KeyedError as exc:
            raise KeyedError(("headers", *exc.at(())), exc.text) from None
        if not self.url.lower().startswith("https://"):
            for i, condition in enumerate(self.conditions):
                if condition.subject.kind == "cert.days_left":
                    # Reported at the item (``conditions[1]``).
                    raise KeyedError(("conditions", i), "cert.days_left needs an https:// url")


@dataclass(frozen=True, slots=True)
class _Rule:
    """A condition the response must meet, and how its failure reads (None: a user's condition)."""

    condition: Condition
    describe: Callable[[Verdict], str] | None = None

    def failure(self, verdict: Verdict) -> str:
        return failure_message(self.condition, verdict) if self.describe is None else self.describe(verdict)


def _rules(config: HttpCheckConfig) -> list[_Rule]:
    """``expect`` as conditions (keeping its own failure texts), then ``conditions``: one evaluation path.

    Without a condition on ``status`` (in ``expect`` or ``conditions``), a 2xx is required.
    """
    rules: list[_Rule] = []
    expect = config.expect
    conditions: list[Condition] = list(config.conditions)
    statuses = expect.status if expect is not None else None
    if statuses:
        rules.append(_Rule(_expected("status", "in", tuple(statuses)), _just_the_status))
    elif not any(c.subject.kind == "status" for c in conditions):
        rules.append(_ANY_2XX)
    if expect is not None and expect.body_contains:
        needle = expect.body_contains
        rules.append(_Rule(_expected("body", "contains", needle), lambda _: f"body does not contain {needle!r}"))
    if expect is not None and expect.max_latency is not None:
        limit = expect.max_latency
        rules.append(
            _Rule(
                _expected("latency", "<=", DurationValue(limit)),
                lambda verdict: f"latency {verdict.value:.2f}s over {limit:g}s",
            )
        )
    rules.extend(_Rule(condition) for condition in conditions)
    return rules


def _expected(
    kind: Literal["status", "body", "latency"], op: Literal["in", "contains", "<="], value: Any
) -> Condition:
    return Condition(f"expect.{kind}", Subject(kind), op, value)


def _just_the_status(verdict: Verdict) -> str:
    return ""  # "HTTP 503" says it all


_ANY_2XX = _Rule(_expected("status", "in", ("2xx",)), _just_the_status)
"""The status rule of a check that states none: one for all of them."""


class HttpCheck(Check[HttpCheckConfig]):
    """Requests ``config.url`` and passes on a 2xx, or on what ``expect`` and ``conditions`` ask for."""

    type: ClassVar[str] = "http"
    config_model = HttpCheckConfig
    needs = frozenset({"http"})

    def __init__(self, config: HttpCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        import aiohttp

        self._method: str = config.method.upper()
        # Shown and stored everywhere (incidents, API, payloads): never the URL's credentials.
        self._target = redact_url(config.url)
        self._url: URL | None = None
        self._headers: dict[str, str] | None = dict(config.headers) if config.headers else None
        self._ssl: bool | ssl.SSLContext = bool(config.verify_tls)
        # Extra CAs: a context of the system's CAs and the file's, made off the event loop at first use.
        self._ca_file: str | None = config.ca_file if config.verify_tls else None
        # The check's own timeout (enforced by Check.run) is the only one: aiohttp's defaults
        # (30 s connect, 300 s total) would otherwise fire first with a misleading message.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)
        rules = _rules(config)
        self._status_rules = [r for r in rules if r.condition.subject.kind == "status"]
        self._other_rules = [r for r in rules if r.condition.subject.kind != "status"]
        # The common check (no expect, no conditions): a 2xx passes without building an Observed.
        self._just_2xx = len(rules) == 1 and rules[0] is _ANY_2XX
        kinds = {r.condition.subject.kind for r in rules}
        self._wants_headers = "header" in kinds
        self._wants_cert = "cert.days_left" in kinds
        self._wants_baseline = any(isinstance(r.condition.value, Baseline) for r in rules)
        # Plain http:// with nothing aiohttp must do: the lean client (checks/http_lean.py).
        self._lean, why_not = lean_request(config.url, self._method, self._headers) if LEAN else (None, "off")
        log.debug("http.client", check=config.name, client="lean" if self._lean else "aiohttp", why=why_not or None)

    @property
    def target(self) -> str:
        return self._target

    @property
    def lean(self) -> bool:
        """Whether the next probe takes the lean path (plain http://, nothing aiohttp must do)."""
        return self._lean is not None

    async def probe(self) -> Outcome:
        t0 = time.monotonic()
        if self._lean is not None:
            return await self._probe_lean(self._lean, t0)
        return await self._probe_aiohttp(t0)

    async def _probe_aiohttp(self, t0: float) -> Outcome:
        import aiohttp

        if self._ca_file is not None and not isinstance(self._ssl, ssl.SSLContext):
            building = time.monotonic()
            self._ssl = await asyncio.to_thread(client_context, True, self._ca_file)
            t0 += time.monotonic() - building  # reading the CA file is not the target's latency
        try:
            if self._url is None:
                from yarl import URL  # aiohttp's own; parsed once, not on every request

                self._url = URL(self.config.url)
            resp = await self.context.http.request(
                self._method,
                self._url,
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
        # Read before the body: once it is read, the connection may serve another request.
        cert_days_left = _peer_days_left(resp) if self._wants_cert else None
        try:
            body, at_eof = await _read_capped(resp.content)
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
        return self._judge(resp.status, latency, body, at_eof, resp.headers, resp.url, cert_days_left)

    async def _probe_lean(self, request: LeanRequest, t0: float) -> Outcome:
        """The same request and judgement as ``_probe_aiohttp``, without ``ClientSession``."""
        from aiohttp import ClientError
        from aiohttp.http import HttpProcessingError

        pool = self.context.lean_http
        try:
            message, payload, connection = await pool.send(request)
        except ConnectFailed as exc:
            return Outcome(False, str(exc))
        except HttpProcessingError as exc:  # what ClientResponse.start turns into a ClientResponseError
            return Outcome(False, _bad_response(exc.message))
        except ClientError as exc:
            return Outcome(False, _describe_client_error(exc))
        status, headers = message.code, message.headers
        if status in REDIRECTS and (headers.get("Location") or headers.get("URI")):
            # Redirects are aiohttp's to follow: this check takes its path from now on.
            connection.close()
            self._lean = None
            log.debug("http.client", check=self.name, client="aiohttp", why="redirected")
            return await self._probe_aiohttp(t0)
        try:
            body, at_eof = await _read_capped(payload)
        except ClientError as exc:
            connection.close()
            return Outcome(False, f"HTTP {status}: {_describe_client_error(exc)}")
        except BaseException:  # timed out or cancelled mid-body: the connection is not reused
            connection.close()
            raise
        if at_eof:
            pool.put(request.key, connection)
        else:
            connection.close()  # the rest of the body is never downloaded
        latency = time.monotonic() - t0
        return self._judge(status, latency, body, at_eof, headers, request.url, None)

    def _judge(
        self,
        status: int,
        latency: float,
        body: bytes,
        at_eof: bool,
        headers: Mapping[str, str],
        url: object,
        cert_days_left: float | None,
    ) -> Outcome:
        """The outcome of a response; only a failing one carries it (``details["response"]``, for
        the evidence): nothing reads a passing one's, and at 1,000 checks a second it adds up."""
        if self._just_2xx and 200 <= status <= 299:
            return Outcome(True, _http_status(status))
        observed = Observed(
            status=status,
            latency=latency,
            body=body,
            headers={k.lower(): v for k, v in _joined(headers).items()} if self._wants_headers else None,
            cert_days_left=cert_days_left,
            baseline=self.context.baseline(self.name) if self._wants_baseline else None,
        )
        status_problems = _failures(self._status_rules, observed)
        if status_problems is not None:  # a wrong status says it all: the rest is not judged
            shown = [text for text in status_problems if text]
            message = f"HTTP {status}: {'; '.join(shown)}" if shown else _http_status(status)
            return Outcome(False, message, {"response": _response_details(url, status, headers, body, at_eof)})
        problems = _failures(self._other_rules, observed)
        if problems:
            details = {"response": _response_details(url, status, headers, body, at_eof)}
            return Outcome(False, f"HTTP {status}: {'; '.join(problems)}", details)
        return Outcome(True, _http_status(status))


_STATUS_TEXTS: dict[int, str] = {}


def _http_status(status: int) -> str:
    """``"HTTP 200"``, the same string object every time: the engine keeps a repeated message once."""
    text = _STATUS_TEXTS.get(status)
    if text is None:
        text = _STATUS_TEXTS[status] = f"HTTP {status}"
    return text


def _failures(rules: list[_Rule], observed: Observed) -> list[str] | None:
    """How each failing rule reads, or None when they all hold."""
    failures: list[str] | None = None
    for rule in rules:
        verdict = evaluate(rule.condition, observed)
        if not verdict.ok:
            failures = failures or []
            failures.append(rule.failure(verdict))
    return failures


def _peer_days_left(resp: aiohttp.ClientResponse) -> float | None:
    """Days left on the server's certificate, verified or not; None over plain HTTP."""
    connection = resp.connection
    transport = connection.transport if connection is not None else None
    if transport is None:
        # aiohttp hands a connection back to the pool as soon as a short body has arrived,
        # before ``request()`` returns; the response's protocol still knows its transport.
        protocol = getattr(resp, "_protocol", None)
        transport = getattr(protocol, "transport", None)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, (ssl.SSLObject, ssl.SSLSocket)):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return days_left(read_dates(der), time.time())
    except ValueError:
        return None


async def _read_capped(content: aiohttp.StreamReader) -> tuple[bytes, bool]:
    """Read at most ``BODY_READ_LIMIT`` bytes; say whether that was the whole body."""
    chunks: list[bytes] = []
    size = 0
    while size < BODY_READ_LIMIT:
        chunk = await content.read(BODY_READ_LIMIT - size)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), content.at_eof()


def _joined(headers: Mapping[str, str]) -> dict[str, str]:
    """Repeated headers (Set-Cookie, Via) joined rather than silently dropped."""
    joined: dict[str, str] = {}
    for key, value in headers.items():
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def _response_details(
    url: object, status: int, headers: Mapping[str, str], body: bytes, at_eof: bool
) -> dict[str, Any]:
    return {
        "url": str(url),
        "status": status,
        "headers": _joined(headers),
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
        return _bad_response(exc.message)
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _bad_response(message: str) -> str:
    """A response aiohttp's parser refused (a malformed status line, headers too long...)."""
    return f"bad response: {message}"


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
