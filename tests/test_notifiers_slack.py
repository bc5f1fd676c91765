"""The Slack channel: its exact body, Slack's real answers classified, markup and secrets kept out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actions.notifiers.slack import SlackNotifier, SlackNotifierConfig, mrkdwn_escape, render_slack
from tests.fixtures_chat import EVIDENCE_URL, HOSTILE, Answer, Service, chat_notification
from tests.test_payload import check_golden

TOKEN = "xoxbT0KENb4ck3ndS3cr3tZZ"
PATH = f"/slack/services/T0000000/B0000000/{TOKEN}"


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    s = Service()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def slack(service: Service, session: aiohttp.ClientSession) -> SlackNotifier:
    config = SlackNotifierConfig.model_validate({"name": "chat", "type": "slack", "url": service.url(PATH), "timeout": "2s"})
    return SlackNotifier(config, lambda: session)


def texts(body: dict[str, Any]) -> list[str]:
    """Every string Slack would parse as mrkdwn in the body."""
    out = [body["text"]]
    for block in body["blocks"]:
        if block.get("text", {}).get("type") == "mrkdwn":
            out.append(block["text"]["text"])
    return out


def test_the_opened_body_is_the_golden_one(tmp_path: Path) -> None:
    body = render_slack(chat_notification(tmp_path))
    check_golden("incident-opened.slack.json", json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode() + b"\n")


def test_the_body_has_the_fallback_text_header_fields_code_blocks_and_the_evidence_button(tmp_path: Path) -> None:
    body = json.loads(render_slack(chat_notification(tmp_path)))
    assert body["text"] == "[SEV-1][OPENED] api failing: HTTP 500"
    header, fields, error, logs, actions = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "[SEV-1][OPENED] api failing: HTTP 500"}}
    shown = [f["text"].split(":\n")[0] for f in fields["fields"]]
    assert shown == ["Check", "Target", "Container", "Agent", "Severity", "Lasting", "Heal", "Container state"]
    assert {"type": "plain_text", "text": "Container state:\nexited, exit code 137, OOM-killed", "emoji": False} in fields["fields"]
    assert error["text"]["text"] == "*Last error*\n```HTTP 500```"
    assert logs["text"]["text"].startswith("*Last log lines*\n```listening on :8080\n")
    assert actions["elements"][0]["url"] == EVIDENCE_URL


def test_without_a_public_url_there_is_no_evidence_button(tmp_path: Path) -> None:
    body = json.loads(render_slack(chat_notification(tmp_path, public=False)))
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "section"]


def test_resolved_reads_recovered_after(tmp_path: Path) -> None:
    body = json.loads(render_slack(chat_notification(tmp_path, kind="incident.resolved")))
    assert body["text"] == "[SEV-1][RESOLVED] api recovered after 3m12s"


def test_markup_from_outside_renders_as_text(tmp_path: Path) -> None:
    notification = chat_notification(tmp_path, check=HOSTILE, title=f"{HOSTILE} failing", message=HOSTILE,
                                     logs=[HOSTILE, "```", "</code>"])
    body = json.loads(render_slack(notification))
    for text in texts(body):
        # No raw angle bracket from outside: no <!channel>, no <url|link>, no HTML.
        assert "<" not in text and ">" not in text.replace("&gt;", "")
        assert "&lt;!channel&gt;" in text
    assert "@\u2060channel" in body["text"] and "@channel" not in body["text"]
    for block in body["blocks"][2:4]:  # the code blocks: one opening fence, one closing, nothing between
        inner = block["text"]["text"].split("\n", 1)[1]
        assert inner.startswith("```") and inner.endswith("```") and "`" not in inner[3:-3]
    # Facts are plain_text: Slack shows them exactly as written.
    assert all(f["type"] == "plain_text" for f in body["blocks"][1]["fields"])
    assert any(HOSTILE in f["text"] for f in body["blocks"][1]["fields"])


def test_mrkdwn_escape_escapes_only_what_slack_parses() -> None:
    assert mrkdwn_escape("a & b <!here> <https://x|y> > c") == "a &amp; b &lt;!here&gt; &lt;https://x|y&gt; &gt; c"
    assert mrkdwn_escape("mail me@example.com, @channel", mentions=True) == "mail me@\u2060example.com, @\u2060channel"


def test_long_logs_are_cut_to_fit_a_section(tmp_path: Path) -> None:
    notification = chat_notification(tmp_path, logs=["<" * 5000])
    body = json.loads(render_slack(notification))
    text = body["blocks"][3]["text"]["text"]
    assert len(text) <= 3000 and text.endswith("…```")


async def test_delivered_on_slacks_200_ok_with_the_real_request_shape(tmp_path: Path, service: Service, session: aiohttp.ClientSession) -> None:
    notifier = slack(service, session)
    body = notifier.render(chat_notification(tmp_path))
    delivery = await notifier.send("evt_1", body)
    assert (delivery.outcome, delivery.status) == ("delivered", 200)
    [seen] = service.seen
    assert seen.method == "POST" and seen.path == PATH
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"].startswith("lifeguard/")
    assert seen.body == body and seen.json()["text"] == "[SEV-1][OPENED] api failing: HTTP 500"


async def test_rate_limited_is_retried_after_retry_after(service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/slack"] = [Answer(429, "rate_limited", {"Retry-After": "30"})]
    delivery = await slack(service, session).send("evt_1", b"{}")
    assert (delivery.outcome, delivery.retry_after, delivery.status) == ("retry", 30.0, 429)


@pytest.mark.parametrize(("status", "word"), [
    (400, "invalid_payload"), (400, "no_text"), (403, "invalid_token"), (403, "action_prohibited"),
    (404, "no_service"), (404, "channel_not_found"), (410, "channel_is_archived"),
])
async def test_slacks_refusals_are_dead_and_say_why(service: Service, session: aiohttp.ClientSession, status: int, word: str) -> None:
    service.answers["/slack"] = [Answer(status, word)]
    delivery = await slack(service, session).send("evt_1", b"{}")
    assert delivery.outcome == "dead" and delivery.status == status
    assert delivery.detail.startswith(f"HTTP {status}: {word} (")


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_slacks_server_errors_are_retried(service: Service, session: aiohttp.ClientSession, status: int) -> None:
    service.answers["/slack"] = [Answer(status, "rollup_error")]
    delivery = await slack(service, session).send("evt_1", b"{}")
    assert delivery.outcome == "retry" and delivery.detail == f"HTTP {status}: rollup_error"


async def test_the_hook_token_never_reaches_a_detail_or_the_body(tmp_path: Path, service: Service, session: aiohttp.ClientSession) -> None:
    # A proxy that echoes the URL back in its error must not put the token in the stored error.
    service.answers["/slack"] = [Answer(400, f"bad request to {service.url(PATH)} ({TOKEN})")]
    notifier = slack(service, session)
    body = notifier.render(chat_notification(tmp_path))
    delivery = await notifier.send("evt_1", body)
    assert delivery.outcome == "dead" and TOKEN not in delivery.detail and "[redacted]" in delivery.detail
    assert TOKEN.encode() not in body
    assert TOKEN not in repr(notifier.config)
