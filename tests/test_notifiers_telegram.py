"""The Telegram channel: its exact body, Telegram's real answers classified, markup and secrets kept out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from actions.notifiers import NOTIFIER_TYPES, build_notifier
from actions.notifiers.base import Delivery
from actions.notifiers.message import Message, build_message
from actions.notifiers.telegram import MAX_CHARS, TelegramNotifier, TelegramNotifierConfig, render_text
from agent.config.model import Invalid
from agent.events import Event, Notification
from tests.channel_servers import BOT_TOKEN, CHAT_ID, TelegramServer, parse_telegram_html, too_many_requests, utf16_len
from tests.fixtures_agent import free_port
from tests.test_payload import check_golden, notification  # noqa: F401 - the golden event, a fixture

HOSTILE = "<b>bold</b> *star* `tick` @channel </code></pre> &amp; <a href=\"x\">link</a> <script>"


def config(api_url: str, **overrides: Any) -> TelegramNotifierConfig:
    fields = {"name": "tg", "type": "telegram", "bot_token": BOT_TOKEN, "chat_id": CHAT_ID, "api_url": api_url,
              "timeout": "2s"}
    return TelegramNotifierConfig.model_validate(fields | overrides)


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramServer]:
    server = TelegramServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def notifier(session: aiohttp.ClientSession, api_url: str, **overrides: Any) -> TelegramNotifier:
    return TelegramNotifier(config(api_url, **overrides), lambda: session)


def with_container(n: Notification, logs: list[str], **state: Any) -> Notification:
    container = {"name": "api", "state": {"status": "exited", "exit_code": 137, "oom_killed": True, **state},
                 "logs": logs}
    return replace(n, evidence={**(n.evidence or {}), "container": container}, evidence_public=True)


def hostile_notification(text: str = HOSTILE, logs: list[str] | None = None, error: str | None = None) -> Notification:
    incident = {"id": "inc_1", "check": "api", "title": f"api failing: {text}", "severity": "critical",
                "sev": "SEV-1", "target": f"http://127.0.0.1/{text}", "container": "api",
                "opened_at": "2025-11-24T03:12:42.123Z", "heal": None, "timeline": []}
    event = Event(id="evt_1", kind="incident.opened", incident_id="inc_1", sequence=1, occurred_at=1763953962.123,
                  agent={"name": "web-01", "version": "0.1.0"}, incident=incident)
    evidence = {"checks": [{"ok": False, "message": error if error is not None else f"HTTP 500: {text}"}],
                "container": {"state": {"status": "running"}, "logs": logs if logs is not None else [text, text]}}
    return Notification(event=event, evidence=evidence, evidence_url=f"http://lg.example/e?{text}",
                        evidence_public=True)


# --- render: exact, escaped, bounded -------------------------------------------------------------


def test_the_body_is_the_golden_json(notification: Notification) -> None:  # noqa: F811
    n = with_container(notification, ["starting worker 1", "ERROR db: connection refused <pg:5432> & retrying"])
    body = TelegramNotifier(config("https://api.telegram.org", message_thread_id=42), lambda: None).render(n)  # type: ignore[arg-type, return-value]
    check_golden("incident-opened.telegram.json", json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode() + b"\n")
    sent = json.loads(body)
    assert sent["chat_id"] == CHAT_ID and sent["parse_mode"] == "HTML" and sent["message_thread_id"] == 42
    assert sent["disable_web_page_preview"] is True
    plain, entities = parse_telegram_html(sent["text"])
    assert plain.startswith("[SEV-1][OPENED] api failing: HTTP 500\n")
    assert entities[0] == ("b", "[SEV-1][OPENED] api failing: HTTP 500")
    assert ("pre", "starting worker 1\nERROR db: connection refused <pg:5432> & retrying") in entities
    assert ("a", "Evidence") in entities and 'href="http://127.0.0.1:9810/api/incidents/' in sent["text"]


def test_no_thread_no_key_and_no_link_unless_public(notification: Notification) -> None:  # noqa: F811
    body = json.loads(TelegramNotifier(config("https://api.telegram.org"), lambda: None).render(notification))  # type: ignore[arg-type, return-value]
    assert "message_thread_id" not in body and "<a href" not in body["text"] and "Evidence" not in body["text"]


def test_markup_from_outside_renders_as_text() -> None:
    text = render_text(build_message(hostile_notification()))
    plain, entities = parse_telegram_html(text)  # Telegram would refuse it otherwise
    assert plain.count(HOSTILE) >= 5  # title, target, error, two log lines: all as written
    assert {tag for tag, _ in entities} == {"b", "pre", "a"}
    assert [inner for tag, inner in entities if tag == "pre"] == [f"{HOSTILE}\n{HOSTILE}"]
    assert "<script>" not in text and "</code></pre> &amp;amp;" in text.replace("&lt;", "<").replace("&gt;", ">")


@pytest.mark.parametrize("size", [5_000, 200_000])
def test_huge_log_lines_are_dropped_first_oldest_first(size: int) -> None:
    logs = [f"line {i} " + "x" * size for i in range(4)] + ["the last line <b>"]
    text = render_text(build_message(hostile_notification("t", logs=logs)))
    plain, entities = parse_telegram_html(text)
    assert utf16_len(text) <= MAX_CHARS
    assert ("pre", "the last line <b>") in entities and "line 3" not in plain
    assert "Last 1 log lines:" in plain and "HTTP 500: t" in plain  # the error is whole


def test_a_huge_error_is_shortened_after_the_log_lines_are_gone() -> None:
    error = "E&<" * 100_000  # every character escapes to an entity: a cut must not split one
    text = render_text(build_message(hostile_notification("t", logs=["a", "b"], error=error)))
    plain, entities = parse_telegram_html(text)
    assert MAX_CHARS - 20 <= utf16_len(text) <= MAX_CHARS  # as much as fits, not much less
    assert "pre" not in {tag for tag, _ in entities}
    line = next(row for row in plain.splitlines() if row.startswith("Last error: "))
    assert line.endswith("…") and set(line.removeprefix("Last error: ").removesuffix("…")) <= set("E&<")
    assert plain.startswith("[SEV-1][OPENED] api failing: t")


def test_huge_everything_still_fits_and_parses() -> None:
    wide = "𝕏<&" * 50_000  # astral characters count twice in Telegram's (UTF-16) length
    n = hostile_notification(wide, logs=[wide] * 5, error=wide)
    text = render_text(build_message(n))
    parse_telegram_html(text)
    assert utf16_len(text) <= MAX_CHARS and text.startswith("<b>[SEV-1][OPENED] api failing: ")


def test_the_cut_holds_for_every_length_near_the_limit() -> None:
    for extra in range(0, 60, 7):
        error = "e" * (MAX_CHARS - 300 + extra) + "&"
        text = render_text(build_message(hostile_notification("t", logs=["<pre>" * 40], error=error)))
        parse_telegram_html(text)
        assert utf16_len(text) <= MAX_CHARS


def test_undecodable_log_bytes_do_not_make_the_body_unsendable() -> None:
    body = TelegramNotifier(config("https://api.telegram.org"), lambda: None).render(  # type: ignore[arg-type, return-value]
        hostile_notification("t", logs=["bad \udcff byte"]))
    assert "bad ? byte" in json.loads(body)["text"]


def test_a_message_without_extras_is_just_its_lines() -> None:
    m = Message(first_line="[TEST][SEV-2] ping", label="TEST", severity="high", sev="SEV-2", title="ping",
                facts=[("Agent", "web-01")], test=True)
    assert render_text(m) == "<b>[TEST][SEV-2] ping</b>\n\n<b>Agent:</b> web-01"


# --- config --------------------------------------------------------------------------------------


def test_config_keys_and_defaults() -> None:
    c = TelegramNotifierConfig.model_validate({"name": "tg", "type": "telegram", "bot_token": BOT_TOKEN,
                                               "chat_id": "-1001234567890"})
    assert c.chat_id == -1001234567890 and c.api_url == "https://api.telegram.org" and c.message_thread_id is None
    assert c.model_copy(update={"chat_id": "@x"}).chat_id == "@x"
    assert config("https://api.telegram.org", chat_id="@lifeguard_ops").chat_id == "@lifeguard_ops"
    assert BOT_TOKEN not in repr(c)
    assert NOTIFIER_TYPES["telegram"] is TelegramNotifier


@pytest.mark.parametrize("bad", [{"bot_token": "not-a-token"}, {"chat_id": "ops channel"}, {"chat_id": True},
                                 {"message_thread_id": 0}, {"api_url": "ftp://x"}])
def test_config_mistakes_are_refused_without_echoing_the_token(bad: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as info:
        TelegramNotifierConfig.model_validate(
            {"name": "tg", "type": "telegram", "bot_token": BOT_TOKEN, "chat_id": CHAT_ID} | bad)
    assert "not-a-token" not in str(info.value) and BOT_TOKEN not in str(info.value)


# --- send: Telegram's real answers -------------------------------------------------------------


async def test_delivered_on_ok_with_the_real_request_shape(telegram: TelegramServer, session: aiohttp.ClientSession) -> None:
    tg = notifier(session, telegram.api_url)
    body = tg.render(hostile_notification())
    delivery = await tg.send("evt_1", body)
    assert delivery == Delivery("delivered", "HTTP 200", status=200)
    [(path, headers, raw)] = telegram.requests
    assert path == f"/bot{BOT_TOKEN}/sendMessage" and raw == body
    assert headers["Content-Type"] == "application/json"
    [sent] = telegram.sent
    assert sent.plain.startswith("[SEV-1][OPENED] api failing: <b>bold</b>")


async def test_chat_not_found_is_dead(telegram: TelegramServer, session: aiohttp.ClientSession) -> None:
    tg = notifier(session, telegram.api_url, chat_id=-100999)
    delivery = await tg.send("evt_1", tg.render(hostile_notification()))
    assert delivery == Delivery("dead", "HTTP 400: Bad Request: chat not found", status=400)


async def test_a_wrong_token_is_dead_and_not_shown(telegram: TelegramServer, session: aiohttp.ClientSession) -> None:
    other = "7012345678:AAthisIsAnotherTokenThatMustNotShow1"
    tg = notifier(session, telegram.api_url, bot_token=other)
    delivery = await tg.send("evt_1", tg.render(hostile_notification()))
    assert delivery == Delivery("dead", "HTTP 401: Unauthorized", status=401)


@pytest.mark.parametrize(("status", "description"), [(403, "Forbidden: bot was kicked from the supergroup chat"),
                                                     (404, "Not Found")])
async def test_forbidden_and_not_found_are_dead(status: int, description: str, telegram: TelegramServer,
                                                session: aiohttp.ClientSession) -> None:
    telegram.script.append((status, {"ok": False, "error_code": status, "description": description}))
    delivery = await notifier(session, telegram.api_url).send("evt_1", b"{}")
    assert delivery == Delivery("dead", f"HTTP {status}: {description}", status=status)


async def test_too_many_requests_waits_as_long_as_the_body_says(telegram: TelegramServer,
                                                                 session: aiohttp.ClientSession) -> None:
    telegram.script.append(too_many_requests(7))
    tg = notifier(session, telegram.api_url)
    body = tg.render(hostile_notification())
    delivery = await tg.send("evt_1", body)
    assert delivery == Delivery("retry", "HTTP 429: Too Many Requests: retry after 7", status=429, retry_after=7.0)
    assert (await tg.send("evt_1", body)).outcome == "delivered"  # the same bytes, accepted later
    assert len(telegram.sent) == 1


async def test_a_group_that_became_a_supergroup_says_where_it_went(telegram: TelegramServer,
                                                                   session: aiohttp.ClientSession) -> None:
    telegram.script.append((400, {"ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",
                                  "parameters": {"migrate_to_chat_id": -1009876543210}}))
    delivery = await notifier(session, telegram.api_url).send("evt_1", b"{}")
    assert delivery.outcome == "dead" and "set chat_id to it" in delivery.detail and "-1009876543210" in delivery.detail


@pytest.mark.parametrize("status", [500, 502])
async def test_server_errors_are_retried(status: int, telegram: TelegramServer, session: aiohttp.ClientSession) -> None:
    telegram.script.append((status, "<html><body><h1>502 Bad Gateway</h1></body></html>"))
    delivery = await notifier(session, telegram.api_url).send("evt_1", b"{}")
    assert delivery.outcome == "retry" and delivery.status == status


async def test_a_rendered_message_is_never_refused_for_its_markup(telegram: TelegramServer,
                                                                  session: aiohttp.ClientSession) -> None:
    tg = notifier(session, telegram.api_url)
    wide = "𝕏<&>" * 20_000
    for n in (hostile_notification(), hostile_notification(wide, logs=[wide] * 5, error=wide)):
        assert (await tg.send("evt_1", tg.render(n))).outcome == "delivered"
    assert len(telegram.sent) == 2


# --- the bot token: in the URL path, never in a detail ------------------------------------------


async def test_an_echoed_token_is_masked_in_the_detail(telegram: TelegramServer, session: aiohttp.ClientSession) -> None:
    secret_half = BOT_TOKEN.partition(":")[2]
    for answer in (f"Bad Request: wrong path /bot{BOT_TOKEN}/sendMessage", f"Bad Request: token {secret_half}"):
        telegram.script.append((400, {"ok": False, "error_code": 400, "description": answer}))
        telegram.script.append((502, f"upstream {telegram.api_url}/bot{BOT_TOKEN}/sendMessage failed"))
    tg = notifier(session, telegram.api_url)
    details = [(await tg.send("evt_1", b"{}")).detail for _ in range(4)]
    assert all("[redacted]" in d for d in details), details
    assert not any(secret_half in d for d in details)


async def test_no_answer_is_retried_and_the_url_is_not_shown(session: aiohttp.ClientSession) -> None:
    delivery = await notifier(session, f"http://127.0.0.1:{free_port()}").send("evt_1", b"{}")
    assert delivery.outcome == "retry" and "refused" in delivery.detail
    assert BOT_TOKEN.partition(":")[2] not in delivery.detail


def test_private_values_hold_the_token_its_secret_half_and_the_url() -> None:
    tg = TelegramNotifier(config("https://api.telegram.org"), lambda: None)  # type: ignore[arg-type, return-value]
    private = tg.private_values()
    assert BOT_TOKEN in private and BOT_TOKEN.partition(":")[2] in private
    assert f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage" in private
    assert repr(tg) == "<TelegramNotifier 'tg'>"


def test_built_from_the_registry() -> None:
    built = build_notifier(config("https://api.telegram.org"), lambda: None)  # type: ignore[arg-type, return-value]
    assert isinstance(built, TelegramNotifier) and built.needs == frozenset({"http"})
