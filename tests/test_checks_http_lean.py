"""The http check's lean client (checks/http_lean.py) against real servers on 127.0.0.1: aiohttp.web
ones, and raw asyncio ones that answer byte for byte what a test says (stale keep-alive
connections, chunked bodies, malformed answers). Where it matters, the same check is also run
over aiohttp's ``ClientSession`` and the two results must read the same."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import checks.http
import checks.http_lean
from checks.base import CheckContext, CheckResult
from checks.http import HttpCheck
from checks.http_lean import lean_request

ServerFactory = Callable[..., Awaitable[TestServer]]


def http_config(url: str, **overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict(
        name="web", type="http", interval=10.0, timeout=5.0, open_after=0.0, resolve_after=1,
        severity="high", notify=[], container=None, heal=None,
        url=url, method="GET", headers={}, verify_tls=True, ca_file=None, expect=None, conditions=[],
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def check_over(lean: bool, ctx: CheckContext, url: str, **overrides: Any) -> HttpCheck:
    """A check built with the lean client on or off (it is chosen when the check is built)."""
    was = checks.http.LEAN
    checks.http.LEAN = lean
    try:
        check = HttpCheck(http_config(url, **overrides), ctx)
    finally:
        checks.http.LEAN = was
    assert check.lean is lean
    return check


@pytest.fixture
async def ctx() -> AsyncIterator[CheckContext]:
    context = CheckContext()
    yield context
    await context.close()


async def both(url: str, **overrides: Any) -> tuple[CheckResult, CheckResult]:
    """The same check over the lean client and over aiohttp, each with a context of its own."""
    results = []
    for lean in (True, False):
        context = CheckContext()
        try:
            results.append(await check_over(lean, context, url, **overrides).run())
        finally:
            await context.close()
    return results[0], results[1]


def same(lean: CheckResult, session: CheckResult) -> None:
    assert (lean.ok, lean.message, lean.details) == (session.ok, session.message, session.details)


Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawServer"], Awaitable[None]]


class RawServer:
    """A listener on 127.0.0.1 that runs ``handle`` on each connection; counts connections and requests."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()  # set each time a connection ends
        self.release = asyncio.Event()  # set at stop: every handler ends
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await self.handle(reader, writer, self)
        writer.close()
        self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release.set()
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
    while True:
        await server.read_request(reader)
        writer.write(OK)
        await writer.drain()


# -- which checks take it ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "method", "headers", "why"),
    [
        ("http://127.0.0.1:8080/health", "GET", {}, ""),
        ("http://127.0.0.1/x?a=1#top", "HEAD", {"X-Token": "t"}, ""),
        ("http://localhost:8080/", "DELETE", {"Host": "example.com"}, ""),
        ("http://u:p@127.0.0.1/", "PUT", {}, ""),
        ("https://127.0.0.1/", "GET", {}, "https scheme"),
        ("http://127.0.0.1/", "POST", {}, "method POST"),
        ("http://127.0.0.1/", "PATCH", {}, "method PATCH"),
        ("http://127.0.0.1/", "GET", {"Connection": "close"}, "header connection"),
        ("http://127.0.0.1/", "GET", {"transfer-encoding": "chunked"}, "header transfer-encoding"),
        ("http://u:p@127.0.0.1/", "GET", {"Authorization": "Bearer x"}, "credentials in both the URL and a header"),
    ],
)
def test_which_checks_take_the_lean_client(url: str, method: str, headers: dict[str, str], why: str) -> None:
    request, reason = lean_request(url, method, headers)

    assert reason == why
    assert (request is not None) is (why == "")


def test_the_request_is_built_once_as_aiohttp_writes_it() -> None:
    request, _ = lean_request("http://bob:s3cret@127.0.0.1:8080/a%20b?q=1#frag", "PUT", {"X-Token": "t"})

    assert request is not None
    assert request.key == ("127.0.0.1", 8080)
    assert request.url == "http://127.0.0.1:8080/a%20b?q=1"  # what the aiohttp path shows: no user-info, no fragment
    lines = request.data.decode().split("\r\n")
    assert lines[0] == "PUT /a%20b?q=1 HTTP/1.1"
    assert lines[1] == "Host: 127.0.0.1:8080"
    assert "Authorization: Basic Ym9iOnMzY3JldA==" in lines
    assert "Content-Length: 0" in lines
    assert request.data.endswith(b"\r\n\r\n")


# -- the same request, the same result ---------------------------------------------------------------


async def test_the_server_sees_the_same_request_from_both_clients(aiohttp_server: ServerFactory) -> None:
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        seen.append((request.method, request.raw_path, headers, await request.read()))
        return web.Response(text="fine", status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app)
    port = server.port
    cases = [
        (f"http://127.0.0.1:{port}/plain", "GET", {}),
        (f"http://127.0.0.1:{port}/q/a%20b?x=1&y=%2F#fragment", "GET", {"Accept": "application/json"}),
        (f"http://bob:pa%3Ass@127.0.0.1:{port}/auth", "GET", {"X-Trace": "1"}),
        (f"http://localhost:{port}/named", "OPTIONS", {"Host": "example.com", "User-Agent": "probe/1"}),
        (f"http://127.0.0.1:{port}/put", "PUT", {}),
        (f"http://127.0.0.1:{port}/delete", "DELETE", {"Accept-Encoding": "identity"}),
        (f"http://127.0.0.1:{port}/head", "HEAD", {}),
    ]
    for url, method, headers in cases:
        seen.clear()
        lean, session = await both(url, method=method, headers=headers)
        assert len(seen) == 2, url
        assert seen[0] == seen[1], url
        same(lean, session)
        assert lean.message == "HTTP 503"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HELLO\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", id="bad-status-code"),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 0\r\n\r\n", id="header-without-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"a" * 20_000 + b"\r\n\r\n", id="header-too-long"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", id="two-lengths"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                     id="bad-chunk-size"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", id="body-cut-short"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", id="chunks-cut-short"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope", id="bad-gzip"),
        pytest.param(b"", id="closed-without-answer"),
        pytest.param(b"HTTP/1.1 503 Busy\r\nRetry-After: 5\r\n\r\nread until close", id="body-until-close"),
        pytest.param(b"HTTP/1.0 500 Old\r\n\r\nold", id="http-1.0"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad\r\nContent-Length: 1\r\n\r\nx", id="after-100"),
    ],
)
async def test_odd_and_malformed_answers_read_the_same_over_both_clients(answer: bytes) -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with RawServer(answer_once) as server:
        lean, session = await both(server.url)

    same(lean, session)
    assert not lean.ok


async def test_a_reset_connection_reads_the_same_over_both_clients() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: RST, not FIN
        writer.transport.abort()

    async with RawServer(reset) as server:
        lean, session = await both(server.url)

    same(lean, session)
    assert not lean.ok
    assert server.connections == 4  # each client sent it twice: once more after the connection broke


async def test_refused_reads_the_same_over_both_clients() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: refuses connections
        lean, session = await both(f"http://127.0.0.1:{sock.getsockname()[1]}/")

    same(lean, session)
    assert lean.message == "connection refused"


async def test_a_name_is_resolved_and_its_refusal_reads_the_same() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        lean, session = await both(f"http://localhost:{sock.getsockname()[1]}/")

    same(lean, session)
    assert lean.message == "connection refused"


async def test_a_timeout_reads_the_same_and_a_late_answer_is_never_read_as_the_next_one(ctx: CheckContext) -> None:
    answered = 0

    async def late_then_fresh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        nonlocal answered
        while True:
            await server.read_request(reader)
            answered += 1
            if answered == 1:  # the first request: answered only after the check gave up
                await server.release.wait()
            body = b"late" if answered == 1 else b"fresh"
            writer.write(b"HTTP/1.1 500 X\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async with RawServer(late_then_fresh) as server:
        check = check_over(True, ctx, server.url, timeout=0.3)
        timed_out = await check.run()
        fresh = await check.run()

    assert timed_out.message == "timed out after 300ms"
    assert 0.3 <= timed_out.latency < 1.0
    assert fresh.message == "HTTP 500"
    assert fresh.details["response"]["body"] == "fresh"
    assert server.connections == 2  # the timed-out connection was dropped, not reused


# -- keep-alive ------------------------------------------------------------------------------------


async def test_checks_of_one_host_share_its_keep_alive_connections(ctx: CheckContext) -> None:
    async with RawServer(keep_alive) as server:
        first = check_over(True, ctx, server.url + "a")
        second = check_over(True, ctx, server.url + "b")
        results = [await check.run() for _ in range(3) for check in (first, second)]

    assert all(r.ok for r in results), [r.message for r in results]
    assert len(server.requests) == 6
    assert server.connections == 1
    assert ctx.lean_http.opened == 1


async def test_concurrent_checks_each_get_a_connection_then_reuse_them(ctx: CheckContext) -> None:
    async with RawServer(keep_alive) as server:
        group = [check_over(True, ctx, server.url + str(i)) for i in range(5)]
        for _ in range(3):
            results = await asyncio.gather(*(check.run() for check in group))
            assert all(r.ok for r in results)

    assert len(server.requests) == 15
    assert server.connections == 5


async def test_a_keep_alive_connection_the_server_closed_is_not_a_failure(ctx: CheckContext) -> None:
    """The server closes an idle keep-alive connection just as the next request comes: that request
    finds it closed before any answer (what a server's keep-alive timeout does in a race). The lean
    client, like aiohttp, sends it once more on a new connection."""

    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(OK)  # keep-alive by HTTP/1.1's default: the client pools the connection
        await writer.drain()
        await server.read_request(reader)  # the next request arrives...
        # ...and the connection is closed without an answer.

    async with RawServer(one_per_connection) as server:
        check = check_over(True, ctx, server.url)
        results = [await check.run() for _ in range(4)]

    assert [r.message for r in results] == ["HTTP 200"] * 4
    # Requests 2, 3 and 4 each met a connection closed under them, then were answered on a new one.
    assert len(server.requests) == 7
    assert server.connections == 4


async def test_a_connection_closed_while_idle_is_not_reused(ctx: CheckContext) -> None:
    async def close_after_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(OK)
        await writer.drain()

    async with RawServer(close_after_answer) as server:
        check = check_over(True, ctx, server.url)
        first = await check.run()
        await server.closed.wait()
        await asyncio.sleep(0)  # the client's side of the close (connection_lost) runs
        second = await check.run()

    assert first.ok and second.ok
    assert len(server.requests) == 2  # the closed connection was skipped, not tried
    assert server.connections == 2


async def test_an_answer_nobody_asked_for_is_not_read_as_the_next_one(ctx: CheckContext) -> None:
    """A server that answers 408 on an idle keep-alive connection (and would close it later): the
    pooled connection holds an answer before any request; it is dropped, not read as the next one."""
    pooled, sent = asyncio.Event(), asyncio.Event()

    async def timeout_notice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)
        writer.write(OK)
        await writer.drain()
        if server.connections == 1:
            await pooled.wait()
            writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            sent.set()
        await server.release.wait()

    async with RawServer(timeout_notice) as server:
        check = check_over(True, ctx, server.url)
        first = await check.run()
        pooled.set()
        await sent.wait()
        [(idle, _)] = ctx.lean_http._idle[("127.0.0.1", server.port)]
        async with asyncio.timeout(5):
            while not len(idle):  # the 408 has reached the pooled connection's queue
                await asyncio.sleep(0.005)
        second = await check.run()

    assert (first.message, second.message) == ("HTTP 200", "HTTP 200")
    assert server.connections == 2


async def test_a_server_that_always_hangs_up_fails_as_disconnected(ctx: CheckContext) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        await server.read_request(reader)

    async with RawServer(hang_up) as server:
        lean, session = await both(server.url)

    same(lean, session)
    assert lean.message == "server disconnected"
    assert server.connections == 4  # each client tried twice


async def test_connection_close_and_an_unread_body_are_not_reused(ctx: CheckContext) -> None:
    answers = iter([
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (200 * 1024) + b"x" * (200 * 1024),
        OK,
    ])

    async def scripted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        with contextlib.suppress(StopIteration):
            while True:
                await server.read_request(reader)
                writer.write(next(answers))
                await writer.drain()

    async with RawServer(scripted) as server:
        check = check_over(True, ctx, server.url)
        results = [await check.run() for _ in range(3)]

    assert [r.ok for r in results] == [True, True, True]
    assert server.connections == 3  # closed after "Connection: close", and after a body read only in part


async def test_idle_connections_are_closed_after_the_keep_alive_timeout(
    ctx: CheckContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks.http_lean, "KEEPALIVE_TIMEOUT", 0.05)
    async with RawServer(keep_alive) as server:
        result = await check_over(True, ctx, server.url).run()
        await asyncio.wait_for(server.closed.wait(), 5)

    assert result.ok
    assert server.connections == 1


async def test_closing_the_context_closes_idle_connections() -> None:
    context = CheckContext()
    async with RawServer(keep_alive) as server:
        result = await check_over(True, context, server.url).run()
        assert not server.closed.is_set()
        await context.close()
        await asyncio.wait_for(server.closed.wait(), 5)

    assert result.ok


# -- bodies ------------------------------------------------------------------------------------------


async def test_a_chunked_body_is_read_and_its_connection_reused(ctx: CheckContext) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b'{"status": ', b'"ok", ', b'"db": "up"}'):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with RawServer(chunked) as server:
        check = check_over(True, ctx, server.url, expect=SimpleNamespace(status=None, body_contains='"db": "up"',
                                                                         max_latency=None))
        results = [await check.run() for _ in range(3)]

    assert [r.message for r in results] == ["HTTP 200"] * 3
    assert all(r.ok for r in results)
    assert server.connections == 1


async def test_a_compressed_body_is_searched_decompressed(aiohttp_server: ServerFactory) -> None:
    payload = gzip.compress(b"status: degraded")

    async def zipped(request: web.Request) -> web.Response:
        assert "gzip" in request.headers["Accept-Encoding"]
        return web.Response(body=payload, status=200, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/", zipped)
    server = await aiohttp_server(app)
    expect = SimpleNamespace(status=None, body_contains="status: ok", max_latency=None)

    lean, session = await both(str(server.make_url("/")), expect=expect)

    same(lean, session)
    assert lean.message == "HTTP 200: body does not contain 'status: ok'"
    assert lean.details["response"]["body"] == "status: degraded"


async def test_a_head_request_reads_no_body_and_keeps_its_connection(ctx: CheckContext) -> None:
    async def head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")  # the length a GET would get
            await writer.drain()

    async with RawServer(head) as server:
        check = check_over(True, ctx, server.url, method="HEAD")
        results = [await check.run() for _ in range(2)]

    assert [r.message for r in results] == ["HTTP 200"] * 2
    assert server.connections == 1


async def test_a_header_condition_sees_the_headers(ctx: CheckContext, aiohttp_server: ServerFactory) -> None:
    from checks.conditions import HTTP_SUBJECTS, parse

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"X-Version": "2.1"})

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    conditions = [parse('header.x-version == "2.0"', HTTP_SUBJECTS, check_type="http")]

    lean, session = await both(str(server.make_url("/")), conditions=conditions)

    same(lean, session)
    assert not lean.ok
    assert "2.1" in lean.message
