"""The Discord channel: its exact embed, Discord's real answers classified, markup and secrets kept out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from actions.notifiers.discord import DiscordNotifier, DiscordNotifierConfig, markdown_escape, render_discord
from tests.fixtures_chat import EVIDENCE_URL, HOSTILE, Answer, Service, chat_notification
from tests.test_payload import check_golden

TOKEN = "dIsCoRdWeBhOoKt0k3nS3cr3t"
PATH = f"/discord/api/webhooks/1234567890/{TOKEN}"


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    s = Service()
    s.default["/discord"] = Answer(204)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def discord(service: Service, session: aiohttp.ClientSession) -> DiscordNotifier:
    config = DiscordNotifierConfig.model_validate({"name": "chat", "type": "discord", "url": service.url(PATH), "timeout": "2s"})
    return DiscordNotifier(config, lambda: session)


def test_the_opened_body_is_the_golden_one(tmp_path: Path) -> None:
    body = render_discord(chat_notification(tmp_path))
    check_golden("incident-opened.discord.json", json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode() + b"\n")


def test_the_embed_has_title_colour_fields_description_and_link(tmp_path: Path) -> None:
    body = json.loads(render_discord(chat_notification(tmp_path)))
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert embed["title"] == "\\[SEV\\-1\\]\\[OPENED\\] api failing\\: HTTP 500"
    assert embed["color"] == 0xD83C3E and embed["url"] == EVIDENCE_URL
    assert [f["name"] for f in embed["fields"]] == [
        "Check", "Target", "Container", "Agent", "Severity", "Lasting", "Heal", "Container state"]
    assert embed["description"].startswith("**Last error**\n```\nHTTP 500\n```\n**Last log lines**\n```\nlistening")


def test_resolved_is_green_and_without_a_public_url_there_is_no_link(tmp_path: Path) -> None:
    [embed] = json.loads(render_discord(chat_notification(tmp_path, kind="incident.resolved", public=False)))["embeds"]
    assert embed["color"] == 0x2EA043 and "url" not in embed
    assert "recovered after 3m12s" in embed["title"]


def test_markup_from_outside_renders_as_text(tmp_path: Path) -> None:
    notification = chat_notification(tmp_path, check=HOSTILE, title=f"{HOSTILE} failing", message=HOSTILE,
                                     logs=[HOSTILE, "```", "</code>"])
    body = json.loads(render_discord(notification))
    assert body["allowed_mentions"] == {"parse": []}  # whatever the text says, nobody is pinged
    [embed] = body["embeds"]
    check_field = embed["fields"][0]["value"]
    for text in (embed["title"], check_field):
        for char in "<>*_~`[]()#@":
            # Every markup character is escaped by a backslash.
            assert all(text[i - 1] == "\\" for i, c in enumerate(text) if c == char), (char, text)
    # Code blocks: the fences are ours alone; backticks from outside became a look-alike.
    assert embed["description"].count("```") == 4
    assert "\u02cb\u02cb\u02cbfence\u02cb\u02cb\u02cb" in embed["description"]


def test_escaping_is_undone_by_discords_rule_and_cuts_never_split_an_escape() -> None:
    import re

    text = "a*b_c `d` @everyone <@123> [x](y) \\ ok"
    assert re.sub(r"\\([^0-9A-Za-z\s])", r"\1", markdown_escape(text)) == text
    from actions.notifiers.discord import _escaped

    cut = _escaped("*" * 600, 1024)
    assert len(cut) <= 1024 and cut.endswith("\\*…")


async def test_delivered_on_discords_204_with_the_real_request_shape(tmp_path: Path, service: Service, session: aiohttp.ClientSession) -> None:
    notifier = discord(service, session)
    body = notifier.render(chat_notification(tmp_path))
    delivery = await notifier.send("evt_1", body)
    assert (delivery.outcome, delivery.status) == ("delivered", 204)
    [seen] = service.seen
    assert seen.method == "POST" and seen.path == PATH and seen.query == ""
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == body and "api failing" in seen.json()["embeds"][0]["title"]


async def test_rate_limited_is_retried_after_the_bodys_retry_after(service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/discord"] = [Answer(
        429, {"message": "You are being rate limited.", "retry_after": 0.529, "global": False},
        {"Retry-After": "1", "X-RateLimit-Scope": "user"},
    )]
    delivery = await discord(service, session).send("evt_1", b"{}")
    assert (delivery.outcome, delivery.retry_after) == ("retry", 0.529)
    assert delivery.detail == "HTTP 429: You are being rate limited."


async def test_rate_limited_without_a_body_uses_the_header(service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/discord"] = [Answer(429, "", {"Retry-After": "3"})]
    delivery = await discord(service, session).send("evt_1", b"{}")
    assert (delivery.outcome, delivery.retry_after) == ("retry", 3.0)


@pytest.mark.parametrize(("status", "body", "detail"), [
    (400, {"code": 50006, "message": "Cannot send an empty message"}, "HTTP 400: Cannot send an empty message (code 50006)"),
    (400, {"code": 50035, "errors": {"embeds": {}}, "message": "Invalid Form Body"}, "HTTP 400: Invalid Form Body (code 50035)"),
    (401, {"code": 50027, "message": "Invalid Webhook Token"}, "HTTP 401: Invalid Webhook Token (code 50027)"),
    (404, {"code": 10015, "message": "Unknown Webhook"}, "HTTP 404: Unknown Webhook (code 10015)"),
])
async def test_discords_refusals_are_dead(service: Service, session: aiohttp.ClientSession, status: int, body: dict, detail: str) -> None:
    service.answers["/discord"] = [Answer(status, body)]
    delivery = await discord(service, session).send("evt_1", b"{}")
    assert (delivery.outcome, delivery.status, delivery.detail) == ("dead", status, detail)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_discords_server_errors_are_retried(service: Service, session: aiohttp.ClientSession, status: int) -> None:
    service.answers["/discord"] = [Answer(status, "upstream connect error")]
    assert (await discord(service, session).send("evt_1", b"{}")).outcome == "retry"


async def test_the_webhook_token_never_reaches_a_detail_or_the_body(tmp_path: Path, service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/discord"] = [Answer(401, {"code": 50027, "message": f"Invalid Webhook Token {TOKEN}"})]
    notifier = discord(service, session)
    body = notifier.render(chat_notification(tmp_path))
    delivery = await notifier.send("evt_1", body)
    assert delivery.outcome == "dead" and TOKEN not in delivery.detail and "[redacted]" in delivery.detail
    assert TOKEN.encode() not in body and TOKEN not in repr(notifier.config)
