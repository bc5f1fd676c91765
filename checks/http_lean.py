"""The lean path of the ``http`` check: one HTTP/1.1 request over a pooled keep-alive connection,
without ``aiohttp.ClientSession``.

At 1,000 checks a second, ``ClientSession._request`` (a ``ClientRequest`` and a ``ClientResponse``
per request, header multidicts, the connector's bookkeeping, timers and cookies) was about a third
of the agent's busy time, for requests that are all alike: a GET of a plain ``http://`` URL. A
check that needs nothing else sends bytes built once in ``__init__`` and reads the answer with
aiohttp's own connection protocol (``aiohttp.client_proto.ResponseHandler``) and response parser
(llhttp, in C), so status lines, headers, ``Content-Length`` and chunked bodies, compressed bodies
and every malformed answer are parsed, and fail, exactly as through the session.

What stays with aiohttp (decided once, at construction): ``https://`` URLs, methods that are not
idempotent (``POST``, ``PATCH``: a request is retried, or repeated through aiohttp on a redirect),
headers that change how a message is framed or the connection kept (``Connection``,
``Transfer-Encoding``, ``Content-Length``, ``Expect``, ``Upgrade``...), credentials in the URL that
``BasicAuth`` refuses. A redirect is not followed here: the first one a check meets moves that check
to aiohttp for good, and that probe is made again through it (same start time, so its latency holds
both).

The session's connection rules are kept: a connection per request at a time, idle ones reused per
(host, port) by every lean check of the same ``CheckContext`` (most recent first) and closed after
15 s idle (aiohttp's keep-alive timeout); a request that finds its connection closed under it
(``ServerDisconnectedError``, ``ClientOSError`` before the status line) is sent once more, on
another connection, as ``ClientSession`` does for idempotent methods.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from aiohappyeyeballs import AddrInfoType
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.http import RawResponseMessage
    from aiohttp.streams import StreamReader

KEEPALIVE_TIMEOUT = 15.0
"""Seconds an idle connection is kept for reuse: aiohttp's ``TCPConnector`` default."""

HAPPY_EYEBALLS_DELAY = 0.25
"""Seconds before the next address of a name is tried alongside: aiohttp's default."""

LEAN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Idempotent methods: safe to send twice (the retry on a stale connection, a redirect's re-run)."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})
"""Statuses aiohttp follows (with a ``Location`` or ``URI`` header)."""

_FRAMING_HEADERS = frozenset(
    {
        "connection", "content-length", "transfer-encoding", "expect", "upgrade", "te", "trailer",
        "keep-alive", "proxy-connection", "proxy-authorization",
    }
)  # fmt: skip
"""Headers that change how the request is framed or the connection kept: left to aiohttp."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GET_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # aiohttp's ClientRequest.GET_METHODS, less TRACE
_POST_METHODS = frozenset({"PUT"})  # of aiohttp's ClientRequest.POST_METHODS, those lean


class ConnectFailed(Exception):
    """No connection could be made; ``str()`` is the reason as the aiohttp path words it."""


@dataclass(frozen=True, slots=True)
class LeanRequest:
    """A check's request, built once: where it goes and the bytes it sends."""

    key: tuple[str, int]
    """(host, port) to connect to: the pool's key."""
    literal: bool
    """The host is an IP address (no name to resolve)."""
    data: bytes
    """The request line and headers, as aiohttp would write them."""
    head: bool
    """A HEAD request: the answer has no body whatever its headers say."""
    url: str
    """The URL as the aiohttp path reports it (``resp.url``): no user-info, no fragment."""


def lean_request(url: str, method: str, headers: dict[str, str] | None) -> tuple[LeanRequest | None, str]:
    """The lean request for this check, or None and why it keeps aiohttp's path."""
    import aiohttp
    from aiohttp.client_reqrep import ClientRequest
    from yarl import URL

    if method not in LEAN_METHODS:
        return None, f"method {method}"
    try:
        parsed = URL(url)
    except ValueError:
        return None, "invalid URL"  # aiohttp says what is wrong with it
    if parsed.scheme != "http":
        return None, f"{parsed.scheme or 'no'} scheme"
    host = parsed.raw_host
    if not host:
        return None, "no host"
    port = parsed.port or 80
    wanted = dict(headers or {})
    names = {name.lower() for name in wanted}
    if framing := sorted(names & _FRAMING_HEADERS):
        return None, f"header {framing[0]}"
    if any(_CONTROL.search(text) for pair in wanted.items() for text in pair):
        return None, "a control character in a header"  # aiohttp refuses to send it
    authorization: str | None = None
    if parsed.raw_user is not None or parsed.raw_password is not None:
        if "authorization" in names:
            return None, "credentials in both the URL and a header"  # aiohttp refuses the request
        login, password = parsed.user or "", parsed.password or ""
        if ":" in login:
            return None, "a ':' in the URL's user name"  # BasicAuth refuses it
        try:
            credentials = f"{login}:{password}".encode("latin1")
        except UnicodeEncodeError:
            return None, "credentials beyond latin-1"
        authorization = "Basic " + base64.b64encode(credentials).decode("latin1")
        parsed = parsed.with_user(None)

    host_header = getattr(parsed, "host_port_subcomponent", None)  # what aiohttp (>= 3.10) sends
    if not isinstance(host_header, str):
        return None, "an older yarl"
    # The headers in aiohttp's order: Host, the check's own, then those it adds when not given.
    lines: list[tuple[str, str]] = [("Host", host_header)]
    for name, value in wanted.items():
        if name.lower() == "host":
            lines[0] = (name, value)
        else:
            lines.append((name, value))
    for name, value in ClientRequest.DEFAULT_HEADERS.items():
        if name.lower() not in names:
            lines.append((name, value))
    if "user-agent" not in names:
        lines.append(("User-Agent", aiohttp.http.SERVER_SOFTWARE))
    if authorization is not None:
        lines.append(("Authorization", authorization))
    if method not in _GET_METHODS:
        lines.append(("Content-Length", "0"))  # aiohttp's, for a method that may carry a body
    if method in _POST_METHODS and "content-type" not in names:
        lines.append(("Content-Type", "application/octet-stream"))
    path = parsed.raw_path_qs or "/"
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines) + "\r\n"
    shown = parsed.with_fragment(None) if parsed.raw_fragment else parsed
    if not _has_happy_eyeballs():
        return None, "an aiohttp older than 3.10"  # no aiohappyeyeballs to connect as it does
    try:
        literal = "%" not in host and bool(ipaddress.ip_address(host))
    except ValueError:
        literal = False
    return LeanRequest((host, port), literal, head.encode("utf-8"), method == "HEAD", str(shown)), ""


def _has_happy_eyeballs() -> bool:
    try:
        import aiohappyeyeballs  # noqa: F401  (aiohttp >= 3.10 connects through it)
    except ImportError:  # pragma: no cover - an older aiohttp
        return False
    return True


class LeanPool:
    """Idle keep-alive connections per (host, port), shared by the lean checks of one context."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[ResponseHandler, float]]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.opened = 0
        """Connections made so far (for tests and curiosity)."""

    def _get(self, key: tuple[str, int], now: float) -> ResponseHandler | None:
        idle = self._idle.get(key)
        while idle:
            protocol, since = idle.pop()
            # Not one that has something unread (an answer nobody asked for, such as a 408 before
            # the server hangs up): it would be read as the answer to the next request.
            if protocol.is_connected() and not protocol.should_close and now - since <= KEEPALIVE_TIMEOUT:
                return protocol
            protocol.close()
        return None

    def put(self, key: tuple[str, int], protocol: ResponseHandler) -> None:
        """Hand a connection back after a whole answer was read; closed instead if it must be."""
        if protocol.should_close or not protocol.is_connected():
            protocol.close()
            return
        loop = asyncio.get_running_loop()
        self._idle.setdefault(key, []).append((protocol, loop.time()))
        if self._sweep is None:
            self._sweep = loop.call_later(KEEPALIVE_TIMEOUT, self._expire)

    def _expire(self) -> None:
        """Close connections idle for longer than the keep-alive timeout (every 15 s while any is)."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - KEEPALIVE_TIMEOUT
        for key in list(self._idle):
            kept = []
            for protocol, since in self._idle[key]:
                if since >= deadline and protocol.is_connected():
                    kept.append((protocol, since))
                else:
                    protocol.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        if self._idle:
            self._sweep = loop.call_later(KEEPALIVE_TIMEOUT, self._expire)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for protocol, _ in idle:
                protocol.close()
        self._idle.clear()

    async def _connect(self, request: LeanRequest) -> ResponseHandler:
        """A new connection, made as aiohttp's ``TCPConnector`` makes it: every address of the name,
        happy-eyeballs style, then those left after the first one failed; the same error at the end."""
        import aiohappyeyeballs
        from aiohttp.client_proto import ResponseHandler

        from agent.neterrors import describe_os_error  # plain http: no TLS error to word

        loop = asyncio.get_running_loop()
        host, port = request.key
        infos: list[AddrInfoType]
        if request.literal:
            v6 = ":" in host
            address = (host, port, 0, 0) if v6 else (host, port)
            infos = [(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]
        else:
            try:
                found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
            except OSError as exc:
                raise ConnectFailed("cannot resolve host") from exc
            infos = list(found)
        failure: OSError | None = None
        while infos:
            try:
                sock = await aiohappyeyeballs.start_connection(
                    infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, loop=loop
                )
                try:
                    _, protocol = await loop.create_connection(lambda: ResponseHandler(loop), sock=sock)
                except BaseException:
                    sock.close()
                    raise
            except OSError as exc:
                failure = exc
                aiohappyeyeballs.pop_addr_infos_interleave(infos, None)
                continue
            self.opened += 1
            return protocol
        assert failure is not None
        raise ConnectFailed(describe_os_error(failure)) from failure

    async def send(self, request: LeanRequest) -> tuple[RawResponseMessage, StreamReader, ResponseHandler]:
        """Send the request; the answer's status line and headers, its body stream and its connection.

        The caller reads the body and hands the connection back with ``put`` (or closes it).
        Raises ``ConnectFailed``, or aiohttp's own errors for what went wrong after connecting.
        """
        from aiohttp import ClientOSError, ServerDisconnectedError

        loop = asyncio.get_running_loop()
        retried = False
        while True:
            protocol = self._get(request.key, loop.time())
            if protocol is None:
                protocol = await self._connect(request)
            try:
                protocol.set_response_params(skip_payload=request.head, read_until_eof=True, auto_decompress=True)
                assert protocol.transport is not None
                protocol.transport.write(request.data)
                while True:
                    message, payload = await protocol.read()
                    # 1xx informational answers are skipped, as aiohttp's ClientResponse.start does.
                    if message.code < 100 or message.code > 199 or message.code == 101:
                        return message, payload, protocol
            except (ClientOSError, ServerDisconnectedError):
                protocol.close()
                if retried:
                    raise
                retried = True  # a keep-alive connection the server had closed: once more
            except BaseException:
                protocol.close()
                raise
