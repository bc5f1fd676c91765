"""Notifiers against real receivers: one attempt per send, classified for the outbox."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

import agent
from actions.notifiers import NOTIFIER_TYPES, build_notifier
from actions.notifiers.base import Delivery
from actions.notifiers.file import FileNotifier, FileNotifierConfig
from actions.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig
from agent.signing import decode_secret, generate_secret, sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = json.dumps({"schema": "lifeguard.incident/v1", "event_id": "evt_1", "event": "incident.opened"}).encode()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records requests and answers as a test tells it."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answer: Handler | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def reply(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        async def answer(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, text=text, headers=headers)

        self.answer = answer


@pytest.fixture
async def receiver(aiohttp_server: Any) -> AsyncIterator[Receiver]:
    recv = Receiver()
    recv.reply(200, "ok")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        recv.requests.append(Received(request.path, dict(request.headers), body))
        assert recv.answer is not None
        return await recv.answer(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    recv.url = str(server.make_url("/hook"))
    yield recv
    recv.release.set()  # lets a hanging handler finish, so the server closes at once


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def webhook_config(url: str, **overrides: Any) -> WebhookNotifierConfig:
    fields: dict[str, Any] = {"name": "hooks", "type": "webhook", "url": url, "secret": SECRET, "timeout": "2s"}
    return WebhookNotifierConfig.model_validate(fields | overrides)


def webhook(
    session: aiohttp.ClientSession, url: str, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> WebhookNotifier:
    return WebhookNotifier(webhook_config(url, **overrides), lambda: session, clock=clock)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that is bound (so nobody else takes it) but not listening: connects are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --- webhook: delivered and signed -------------------------------------------------------


async def test_delivered_on_200_and_verifiable_with_standard_webhooks(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    delivery = await webhook(session, receiver.url).send("evt_1", BODY)

    assert delivery == Delivery("delivered", "HTTP 200", status=200)
    [req] = receiver.requests
    assert Webhook(SECRET).verify(req.body, req.headers) == json.loads(BODY)
    assert req.body == BODY
    assert req.headers["webhook-id"] == "evt_1"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"] == f"lifeguard/{agent.__version__}"


async def test_retry_keeps_the_id_and_signs_a_fresh_timestamp(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    now = time.time()
    ticks = iter([now, now + 42])
    notifier = webhook(session, receiver.url, clock=lambda: next(ticks))

    receiver.reply(503)
    first = await notifier.send("evt_7", BODY)
    receiver.reply(200)
    second = await notifier.send("evt_7", BODY)

    assert (first.outcome, second.outcome) == ("retry", "delivered")
    a, b = receiver.requests
    assert a.headers["webhook-id"] == b.headers["webhook-id"] == "evt_7"
    assert (a.headers["webhook-timestamp"], b.headers["webhook-timestamp"]) == (str(int(now)), str(int(now + 42)))
    assert a.headers["webhook-signature"] != b.headers["webhook-signature"]
    for req in (a, b):
        Webhook(SECRET).verify(req.body, req.headers)


async def test_extra_headers_are_sent_but_cannot_override_the_protocol_headers(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    extra = {"Authorization": "Bearer t0ken-123", "X-Team": "ops", "webhook-id": "forged", "content-type": "text/plain"}

    await webhook(session, receiver.url, headers=extra).send("evt_1", BODY)

    [req] = receiver.requests
    assert req.headers["Authorization"] == "Bearer t0ken-123"
    assert req.headers["X-Team"] == "ops"
    assert req.headers["webhook-id"] == "evt_1"
    assert req.headers["Content-Type"] == "application/json"
    Webhook(SECRET).verify(req.body, req.headers)


async def test_without_a_secret_no_signature_header_is_sent(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    delivery = await webhook(session, receiver.url, secret=None).send("evt_1", BODY)

    assert delivery.outcome == "delivered"
    [req] = receiver.requests
    assert "webhook-signature" not in req.headers
    assert req.headers["webhook-id"] == "evt_1"
    assert req.headers["webhook-timestamp"].isdigit()


# --- webhook: classification ---------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 408])
async def test_transient_statuses_are_retried(receiver: Receiver, session: aiohttp.ClientSession, status: int) -> None:
    receiver.reply(status, "try\n  later")

    delivery = await webhook(session, receiver.url).send("evt_1", BODY)

    assert delivery == Delivery("retry", f"HTTP {status}: try later", status=status)


async def test_429_is_retried_after_the_seconds_in_retry_after(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.reply(429, headers={"Retry-After": "7"})

    delivery = await webhook(session, receiver.url).send("evt_1", BODY)

    assert (delivery.outcome, delivery.status, delivery.retry_after) == ("retry", 429, 7.0)


async def test_retry_after_as_an_http_date_counts_from_the_clock(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    now = float(int(time.time()))
    receiver.reply(503, headers={"Retry-After": format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)})

    delivery = await webhook(session, receiver.url, clock=lambda: now).send("evt_1", BODY)

    assert (delivery.outcome, delivery.retry_after) == ("retry", 30.0)


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_other_client_errors_are_dead(receiver: Receiver, session: aiohttp.ClientSession, status: int) -> None:
    receiver.reply(status, "no such hook")

    delivery = await webhook(session, receiver.url).send("evt_1", BODY)

    assert delivery == Delivery("dead", f"HTTP {status}: no such hook", status=status)


async def test_redirect_is_dead_and_not_followed(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    receiver.reply(301, headers={"Location": "/moved"})

    delivery = await webhook(session, receiver.url).send("evt_1", BODY)

    assert delivery == Delivery("dead", "HTTP 301: redirect not followed (Location: /moved)", status=301)
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_connection_refused_is_retried(session: aiohttp.ClientSession, closed_port: int) -> None:
    delivery = await webhook(session, f"http://127.0.0.1:{closed_port}/hook").send("evt_1", BODY)

    assert delivery == Delivery("retry", "connection refused")


async def test_a_hanging_receiver_is_retried_after_the_timeout(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await receiver.release.wait()
        return web.Response()

    receiver.answer = hang
    started = time.monotonic()

    delivery = await webhook(session, receiver.url, timeout="300ms").send("evt_1", BODY)

    assert delivery == Delivery("retry", "timed out after 300ms")
    assert 0.25 <= time.monotonic() - started < 1.0


async def test_secret_and_request_headers_never_reach_the_detail(
    receiver: Receiver, session: aiohttp.ClientSession, closed_port: int
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        # A debugging receiver that prints what it got (and what it expected) in its error.
        return web.Response(
            status=401, text=f"expected {SECRET}, got Authorization: {request.headers['Authorization']}"
        )

    receiver.answer = echo
    headers = {"Authorization": "Bearer t0ken-123"}
    details = [
        (await webhook(session, receiver.url, headers=headers).send("evt_1", BODY)).detail,
        (await webhook(session, f"http://127.0.0.1:{closed_port}/x", headers=headers).send("evt_1", BODY)).detail,
    ]

    assert details[0] == "HTTP 401: expected [redacted], got Authorization: [redacted]"
    for detail in details:
        for private in (SECRET, SECRET.removeprefix("whsec_"), "t0ken-123"):
            assert private not in detail


async def test_a_malformed_secret_is_rejected_without_echoing_it(session: aiohttp.ClientSession) -> None:
    # model_copy skips the config's own check, so the notifier's is what is tested.
    config = webhook_config("http://127.0.0.1:1/hook").model_copy(update={"secret": "whsec_not*base64!"})

    with pytest.raises(ValueError, match="base64") as caught:
        WebhookNotifier(config, lambda: session)

    assert "not*base64" not in str(caught.value)


# --- signing ---------------------------------------------------------------------------------


def test_generated_secret_signs_as_the_reference_library_does() -> None:
    secret = generate_secret()
    ts = int(time.time())

    ours = sign(secret, "evt_1", ts, BODY)

    assert secret.startswith("whsec_") and len(decode_secret(secret)) == 32
    assert ours == Webhook(secret).sign("evt_1", datetime.fromtimestamp(ts, UTC), BODY.decode())
    assert generate_secret() != secret


def test_a_secret_without_padding_is_accepted() -> None:
    secret = generate_secret()
    assert secret.endswith("=")

    assert decode_secret(secret.rstrip("=")) == decode_secret(secret)
    assert decode_secret("whsec_" + "QUJDREVGR0hJSktMTU5PUFFS") == b"ABCDEFGHIJKLMNOPQR"
    assert decode_secret("whsec_" + "QUJDREVGR0hJSktMTU5PUFE") == b"ABCDEFGHIJKLMNOPQ"


def test_a_secret_shorter_than_16_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="too short: 3 bytes, at least 16"):
        decode_secret("whsec_QUJD")


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_%%%%secretish", "not valid base64"),
    ],
)
def test_decode_secret_names_the_problem_without_the_secret(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        decode_secret(secret)

    assert secret.removeprefix("whsec_") not in str(caught.value)


def test_decode_secret_rejects_an_empty_key() -> None:
    with pytest.raises(ValueError, match="nothing after 'whsec_'"):
        decode_secret("whsec_")


# --- file ------------------------------------------------------------------------------------


def file_notifier(path: Path) -> FileNotifier:
    config = FileNotifierConfig(name="audit", type="file", path=str(path))
    return FileNotifier(config, lambda: pytest.fail("a file notifier must not need HTTP"))


async def test_file_appends_one_compact_line_per_event_creating_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "events.jsonl"
    notifier = file_notifier(path)
    line = b'{"event_id":"evt_1","title":"api failing: \xc3\xbcn\xc3\xafcode"}\n'

    first = await notifier.send("evt_1", line)
    second = await notifier.send("evt_2", b'{"event_id":"evt_2"}')

    assert (first.outcome, second.outcome) == ("delivered", "delivered")
    assert path.read_text(encoding="utf-8") == (
        '{"event_id":"evt_1","title":"api failing: ünïcode"}\n{"event_id":"evt_2"}\n'
    )


async def test_concurrent_file_sends_write_intact_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    notifier = file_notifier(path)
    n = 50
    bodies = [json.dumps({"event_id": f"evt_{i}", "pad": "x" * 20_000}).encode() for i in range(n)]

    results = await asyncio.gather(*(notifier.send(f"evt_{i}", body) for i, body in enumerate(bodies)))

    assert {r.outcome for r in results} == {"delivered"}
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    events = [json.loads(line) for line in lines[:-1]]
    assert sorted(e["event_id"] for e in events) == sorted(f"evt_{i}" for i in range(n))


async def test_file_write_error_is_retried_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    delivery = await file_notifier(blocker / "events.jsonl").send("evt_1", BODY)

    assert delivery.outcome == "retry"
    assert delivery.detail.startswith(f"cannot write {blocker / 'events.jsonl'}: ")


async def test_a_body_of_more_than_one_line_is_dead(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"

    delivery = await file_notifier(path).send("evt_1", b'{\n  "event_id": "evt_1"\n}')

    assert (delivery.outcome, delivery.detail) == ("dead", "body is not one line")
    assert not path.exists()


# --- registry --------------------------------------------------------------------------------


def test_build_notifier_picks_the_class_by_type(tmp_path: Path) -> None:
    def no_http() -> aiohttp.ClientSession:
        raise AssertionError("building a notifier must not open a session")

    hook = build_notifier(webhook_config("http://127.0.0.1:1/hook"), no_http)
    audit = build_notifier(FileNotifierConfig(name="audit", type="file", path=str(tmp_path / "e.jsonl")), no_http)

    assert (type(hook), hook.name) == (WebhookNotifier, "hooks")
    assert (type(audit), audit.name) == (FileNotifier, "audit")
    assert {"webhook", "file"} <= set(NOTIFIER_TYPES)
    assert all(cls.type == name for name, cls in NOTIFIER_TYPES.items())  # each under its own name


def test_build_notifier_rejects_an_unknown_type() -> None:
    config = SimpleNamespace(name="chat", type="slak")

    known = ", ".join(sorted(NOTIFIER_TYPES))  # every registered type, whichever they are
    with pytest.raises(ValueError, match=rf"notifier 'chat': unknown type 'slak' \(known: {known}\)"):
        build_notifier(config, lambda: pytest.fail("not used"))
