"""The http check against real aiohttp servers on 127.0.0.1, over both of its clients: the lean one
(plain http:// URLs, checks/http_lean.py) and aiohttp's ``ClientSession`` (every test runs twice)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import checks.http
from checks.base import CheckContext
from checks.http import BODY_READ_LIMIT, HttpCheck, _describe_client_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerFactory = Callable[..., Awaitable[TestServer]]


def http_config(url: str, **overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict(
        name="web", type="http", interval=10.0, timeout=5.0, open_after=0.0, resolve_after=1,
        severity="high", notify=[], container=None, heal=None,
        url=url, method="GET", headers={}, verify_tls=True, ca_file=None, expect=None, conditions=[],
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def expect(status: list[int | str] | None = None, body_contains: str | None = None,
           max_latency: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(status=status, body_contains=body_contains, max_latency=max_latency)


@pytest.fixture(autouse=True, params=["lean", "aiohttp"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which client plain http:// checks take in this run of the test (https:// always takes aiohttp)."""
    monkeypatch.setattr(checks.http, "LEAN", request.param == "lean")
    return str(request.param)


@pytest.fixture
async def ctx() -> AsyncIterator[CheckContext]:
    context = CheckContext()
    yield context
    await context.close()


@pytest.fixture
def serve(aiohttp_server: ServerFactory) -> Callable[..., Awaitable[TestServer]]:
    """Start a real server on 127.0.0.1 with the given routes: serve(("GET", "/", handler), ...)."""

    async def start(*routes: tuple[str, str, Handler]) -> TestServer:
        app = web.Application()
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        return await aiohttp_server(app)

    return start


def text(body: str = "ok", status: int = 200, **kwargs: Any) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, status=status, **kwargs)

    return handler


async def test_200_passes(serve, ctx, client) -> None:
    server = await serve(("GET", "/health", text("all good")))
    url = str(server.make_url("/health"))
    check = HttpCheck(http_config(url), ctx)

    result = await check.run()

    assert check.lean is (client == "lean")
    assert result.ok
    assert result.message == "HTTP 200"
    assert result.details == {}  # a passing result does not carry its response: nothing reads it


async def test_a_failing_result_carries_the_response(serve, ctx) -> None:
    server = await serve(("GET", "/health", text("all bad", status=503)))
    url = str(server.make_url("/health"))

    result = await HttpCheck(http_config(url), ctx).run()

    assert not result.ok
    assert result.message == "HTTP 503"
    response = result.details["response"]
    assert response["url"] == url
    assert response["status"] == 503
    assert response["body"] == "all bad"
    assert response["body_truncated"] is False
    assert response["headers"]["Content-Type"] == "text/plain; charset=utf-8"


async def test_target_is_the_url(ctx) -> None:
    assert HttpCheck(http_config("http://127.0.0.1:8080/x"), ctx).target == "http://127.0.0.1:8080/x"


async def test_500_fails_and_captures_the_response(serve, ctx) -> None:
    body = "E" * 5000
    server = await serve(("GET", "/", text(body, status=500, headers={"X-Trace": "abc123"})))

    result = await HttpCheck(http_config(str(server.make_url("/"))), ctx).run()

    assert not result.ok
    assert result.message == "HTTP 500"
    response = result.details["response"]
    assert response["status"] == 500
    assert response["headers"]["X-Trace"] == "abc123"
    assert response["body"] == "E" * 4096
    assert response["body_truncated"] is True


async def test_repeated_response_headers_are_all_kept(serve, ctx) -> None:
    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(text="down", status=503)
        resp.headers.add("Via", "proxy-a")
        resp.headers.add("Via", "proxy-b")
        return resp

    server = await serve(("GET", "/", handler))

    result = await HttpCheck(http_config(str(server.make_url("/"))), ctx).run()

    assert result.details["response"]["headers"]["Via"] == "proxy-a, proxy-b"


@pytest.mark.parametrize(
    ("status", "expected", "ok"),
    [
        (500, [500, 503], True),
        (503, [200, "2xx"], False),
        (204, ["2xx"], True),
        (304, ["3xx"], True),
        (304, None, False),
        (418, ["4xx"], True),
        (404, ["2XX", "3xx"], False),
        (201, ["201"], True),
    ],
)
async def test_expected_status_codes_and_classes(serve, ctx, status, expected, ok) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status)

    server = await serve(("GET", "/", handler))
    config = http_config(str(server.make_url("/")), expect=expect(status=expected))

    result = await HttpCheck(config, ctx).run()

    assert result.ok is ok
    assert result.message == f"HTTP {status}"


def test_a_malformed_status_expectation_is_refused_by_its_config() -> None:
    from checks.http import Expect

    with pytest.raises(ValueError, match="'2x'"):  # the config's Invalid is a ValueError
        Expect.model_validate({"status": ["2x"]})
    assert Expect.model_validate({"status": ["200", "2XX", 404]}).status == [200, "2xx", 404]


async def test_body_contains_passes_when_found(serve, ctx) -> None:
    server = await serve(("GET", "/", text('{"status": "ok"}')))
    config = http_config(str(server.make_url("/")), expect=expect(body_contains='"ok"'))

    result = await HttpCheck(config, ctx).run()

    assert result.ok
    assert result.message == "HTTP 200"


async def test_body_contains_fails_when_missing(serve, ctx) -> None:
    server = await serve(("GET", "/", text('{"status": "degraded"}')))
    config = http_config(str(server.make_url("/")), expect=expect(body_contains="ok"))

    result = await HttpCheck(config, ctx).run()

    assert not result.ok
    assert result.message == "HTTP 200: body does not contain 'ok'"
    assert result.details["response"]["body"] == '{"status": "degraded"}'


async def test_body_contains_searches_only_the_first_64_kib(serve, ctx) -> None:
    server = await serve(("GET", "/", text("x" * BODY_READ_LIMIT + "needle")))
    config = http_config(str(server.make_url("/")), expect=expect(body_contains="needle"))

    result = await HttpCheck(config, ctx).run()

    assert not result.ok
    assert result.message == "HTTP 200: body does not contain 'needle'"


async def test_status_failure_is_reported_before_body(serve, ctx) -> None:
    server = await serve(("GET", "/", text("down", status=503)))
    config = http_config(str(server.make_url("/")), expect=expect(body_contains="ok"))

    result = await HttpCheck(config, ctx).run()

    assert result.message == "HTTP 503"


async def test_slow_response_fails_max_latency(serve, ctx) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)  # the target is slow; that is what is under test
        return web.Response(text="ok")

    server = await serve(("GET", "/", slow))
    config = http_config(str(server.make_url("/")), expect=expect(max_latency=0.05))

    result = await HttpCheck(config, ctx).run()

    assert not result.ok
    assert result.message.startswith("HTTP 200: latency 0.")
    assert result.message.endswith("s over 0.05s")
    assert result.details["response"]["status"] == 200


async def test_fast_response_passes_max_latency(serve, ctx) -> None:
    server = await serve(("GET", "/", text()))
    config = http_config(str(server.make_url("/")), expect=expect(max_latency=2.0))

    result = await HttpCheck(config, ctx).run()

    assert result.ok


async def test_every_failing_expectation_is_named(serve, ctx) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.Response(text="nope")

    server = await serve(("GET", "/", slow))
    config = http_config(str(server.make_url("/")), expect=expect(body_contains="ok", max_latency=0.01))

    result = await HttpCheck(config, ctx).run()

    assert result.message.startswith("HTTP 200: body does not contain 'ok'; latency ")


async def redirect_chain(request: web.Request) -> web.Response:
    hops = int(request.match_info["n"])
    if hops == 0:
        return web.Response(text="arrived", status=int(request.query.get("status", "200")))
    raise web.HTTPFound(f"/hop/{hops - 1}?{request.query_string}")


async def test_redirects_are_followed(serve, ctx) -> None:
    server = await serve(("GET", "/hop/{n}", redirect_chain))
    check = HttpCheck(http_config(str(server.make_url("/hop/2"))), ctx)

    passing = await check.run()

    assert passing.ok
    assert passing.message == "HTTP 200"
    assert not check.lean  # redirects are aiohttp's to follow: the check takes its path from the first one on


async def test_a_redirect_that_ends_failing_shows_the_last_response(serve, ctx) -> None:
    server = await serve(("GET", "/hop/{n}", redirect_chain))

    result = await HttpCheck(http_config(str(server.make_url("/hop/2?status=503"))), ctx).run()

    assert result.message == "HTTP 503"
    assert result.details["response"]["url"] == str(server.make_url("/hop/0?status=503"))
    assert result.details["response"]["body"] == "arrived"


async def test_five_redirects_are_followed(serve, ctx) -> None:
    server = await serve(("GET", "/hop/{n}", redirect_chain))

    result = await HttpCheck(http_config(str(server.make_url("/hop/5"))), ctx).run()

    assert result.ok, result.message


async def test_more_than_five_redirects_fail(serve, ctx) -> None:
    server = await serve(("GET", "/hop/{n}", redirect_chain))

    result = await HttpCheck(http_config(str(server.make_url("/hop/6"))), ctx).run()

    assert not result.ok
    assert result.message == "too many redirects"


async def test_a_hanging_target_times_out(serve, ctx) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    server = await serve(("GET", "/", hang))
    config = http_config(str(server.make_url("/")), timeout=0.3)
    try:
        result = await asyncio.wait_for(HttpCheck(config, ctx).run(), timeout=5)
    finally:
        release.set()  # lets the server shut down without waiting on the handler

    assert not result.ok
    assert result.message == "timed out after 300ms"
    assert 0.3 <= result.latency < 1.0


async def test_a_huge_body_is_not_downloaded(serve, ctx) -> None:
    total = 10 * 1024 * 1024
    chunk = b"z" * (64 * 1024)
    sent = 0
    finished = asyncio.Event()

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(status=500)
        resp.content_length = total
        await resp.prepare(request)
        try:
            while sent < total:
                await resp.write(chunk)
                sent += len(chunk)
        except ConnectionError:
            pass  # the client hung up: expected
        finally:
            finished.set()
        return resp

    server = await serve(("GET", "/", huge))

    result = await HttpCheck(http_config(str(server.make_url("/"))), ctx).run()

    assert result.message == "HTTP 500"
    assert result.details["response"]["body_truncated"] is True
    assert len(result.details["response"]["body"]) == 4096
    await asyncio.wait_for(finished.wait(), timeout=5)
    assert sent < total  # the server saw the client stop reading


async def test_connection_refused(ctx) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refuses connections

        result = await HttpCheck(http_config(f"http://127.0.0.1:{port}/"), ctx).run()

    assert not result.ok
    assert result.message == "connection refused"
    assert "response" not in result.details


async def test_a_dropped_body_is_a_clean_failure(serve, ctx) -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b"partial")
        assert request.transport is not None
        request.transport.close()
        return resp

    server = await serve(("GET", "/", drop))

    result = await HttpCheck(http_config(str(server.make_url("/"))), ctx).run()

    assert not result.ok
    assert result.message.startswith("HTTP 200: bad response body")


async def test_method_and_headers_are_sent(serve, ctx) -> None:
    seen: dict[str, Any] = {}

    async def record(request: web.Request) -> web.Response:
        seen["method"] = request.method
        seen["token"] = request.headers.get("X-Token")
        return web.Response(status=201)

    server = await serve(("POST", "/", record))
    config = http_config(str(server.make_url("/")), method="POST", headers={"X-Token": "s3cret"})

    result = await HttpCheck(config, ctx).run()

    assert result.ok
    assert seen == {"method": "POST", "token": "s3cret"}


async def test_verify_tls_false_is_accepted_over_plain_http(serve, ctx) -> None:
    server = await serve(("GET", "/", text()))

    result = await HttpCheck(http_config(str(server.make_url("/")), verify_tls=False), ctx).run()

    assert result.ok


async def test_probes_reuse_one_keep_alive_connection(serve, ctx) -> None:
    peers: list[Any] = []

    async def record(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    server = await serve(("GET", "/", record))
    check = HttpCheck(http_config(str(server.make_url("/"))), ctx)

    for _ in range(3):
        assert (await check.run()).ok

    assert len(peers) == 3
    assert len(set(peers)) == 1


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.fixture
async def tls_server(aiohttp_server: ServerFactory, self_signed: tuple[Path, Path]) -> TestServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed)
    app = web.Application()
    app.router.add_get("/", text("secure"))
    return await aiohttp_server(app, ssl=context)


async def test_an_untrusted_certificate_is_a_tls_error(tls_server: TestServer, ctx) -> None:
    result = await HttpCheck(http_config(str(tls_server.make_url("/"))), ctx).run()

    assert not result.ok
    assert result.message == "TLS error: certificate verify failed: self-signed certificate"


async def test_verify_tls_false_accepts_an_untrusted_certificate(tls_server: TestServer, ctx) -> None:
    url = str(tls_server.make_url("/"))
    assert url.startswith("https://")

    check = HttpCheck(http_config(url, verify_tls=False, expect=expect(body_contains="secure")), ctx)
    result = await check.run()

    assert not check.lean
    assert result.ok, result.message


def test_a_dns_failure_reads_cannot_resolve_host() -> None:
    # Resolving a real unknown name would send a query off this host, so the error aiohttp
    # raises for one is built here instead.
    key = SimpleNamespace(host="nowhere.invalid", port=80, ssl=True)
    error = aiohttp.ClientConnectorDNSError(key, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    assert _describe_client_error(error) == "cannot resolve host"
