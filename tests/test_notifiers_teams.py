"""The Teams channel: its exact Adaptive Card, the Workflows webhook's answers, markup and secrets kept out."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from actions.notifiers.teams import TeamsNotifier, TeamsNotifierConfig, markdown_escape, render_teams
from tests.fixtures_chat import EVIDENCE_URL, HOSTILE, Answer, Service, chat_notification
from tests.test_payload import check_golden

SIG = "tEaMsWoRkFlOwSiGnAtUrE0123456789abcdefXYZ"
PATH = "/teams/workflows/0a1b2c3d4e5f/triggers/manual/paths/invoke"
QUERY = f"api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    s = Service()
    s.default["/teams"] = Answer(202, "")
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def teams(service: Service, session: aiohttp.ClientSession) -> TeamsNotifier:
    config = TeamsNotifierConfig.model_validate({"name": "chat", "type": "teams", "url": service.url(f"{PATH}?{QUERY}"),
                                           "timeout": "2s"})
    return TeamsNotifier(config, lambda: session)


def unescape(text: str) -> str:
    """CommonMark's rule: a backslash before ASCII punctuation is dropped."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def test_the_opened_body_is_the_golden_one(tmp_path: Path) -> None:
    body = render_teams(chat_notification(tmp_path))
    check_golden("incident-opened.teams.json", json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode() + b"\n")


def test_the_message_wraps_an_adaptive_card_with_title_facts_error_logs_and_button(tmp_path: Path) -> None:
    body = json.loads(render_teams(chat_notification(tmp_path)))
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, facts, *rest = card["body"]
    assert unescape(title["text"]) == "[SEV-1][OPENED] api failing: HTTP 500" and title["color"] == "Attention"
    assert [f["title"] for f in facts["facts"]] == [
        "Check", "Target", "Container", "Agent", "Severity", "Lasting", "Heal", "Container state"]
    assert [b["text"] for b in rest[:3]] == ["Last error", "HTTP 500", "Last log lines"]
    logs = rest[3:]
    assert len(logs) == 5 and all(b["fontType"] == "Monospace" for b in logs)
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Evidence", "url": EVIDENCE_URL}]


def test_resolved_is_good_and_without_a_public_url_there_is_no_button(tmp_path: Path) -> None:
    card = json.loads(render_teams(chat_notification(tmp_path, kind="incident.resolved", public=False)))["attachments"][0]["content"]
    assert card["body"][0]["color"] == "Good" and "actions" not in card


def test_markup_from_outside_renders_as_text(tmp_path: Path) -> None:
    notification = chat_notification(tmp_path, check=HOSTILE, title=f"{HOSTILE} failing", message=HOSTILE,
                                     logs=[HOSTILE, "- a list item", "1. a numbered one", "**bold**"])
    card = json.loads(render_teams(notification))["attachments"][0]["content"]
    texts = [b["text"] for b in card["body"] if b["type"] == "TextBlock"]
    texts += [f["value"] for f in card["body"][1]["facts"]]
    for text in texts:
        for char in "*_~`[]()<>#":
            assert all(text[i - 1] == "\\" for i, c in enumerate(text) if c == char), (char, text)
    assert "\\- a list item" in texts and "1\\. a numbered one" in texts
    assert unescape(markdown_escape(HOSTILE)) == HOSTILE


async def test_delivered_on_202_with_the_real_request_shape(tmp_path: Path, service: Service, session: aiohttp.ClientSession) -> None:
    notifier = teams(service, session)
    body = notifier.render(chat_notification(tmp_path))
    delivery = await notifier.send("evt_1", body)
    assert (delivery.outcome, delivery.status) == ("delivered", 202)
    [seen] = service.seen
    assert seen.method == "POST" and seen.path == PATH and seen.query == QUERY
    assert seen.headers["Content-Type"] == "application/json" and seen.body == body


async def test_200_is_delivered_too(service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/teams"] = [Answer(200, "")]
    assert (await teams(service, session).send("evt_1", b"{}")).outcome == "delivered"


async def test_rate_limited_is_retried_after_retry_after(service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/teams"] = [Answer(429, {"error": {"code": "WorkflowTriggerIsThrottled",
                                                        "message": "The workflow is throttled."}}, {"Retry-After": "12"})]
    delivery = await teams(service, session).send("evt_1", b"{}")
    assert (delivery.outcome, delivery.retry_after) == ("retry", 12.0)
    assert delivery.detail == "HTTP 429: WorkflowTriggerIsThrottled: The workflow is throttled."


@pytest.mark.parametrize(("status", "code"), [
    (400, "TriggerInputSchemaMismatch"), (401, "DirectApiAuthorizationRequired"),
    (403, "WorkflowTriggerNotEnabled"), (404, "WorkflowNotFound"),
])
async def test_the_workflows_refusals_are_dead(service: Service, session: aiohttp.ClientSession, status: int, code: str) -> None:
    service.answers["/teams"] = [Answer(status, {"error": {"code": code, "message": "refused"}})]
    delivery = await teams(service, session).send("evt_1", b"{}")
    assert (delivery.outcome, delivery.detail) == ("dead", f"HTTP {status}: {code}: refused")


async def test_server_errors_are_retried(service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/teams"] = [Answer(502, "Bad Gateway")]
    assert (await teams(service, session).send("evt_1", b"{}")).outcome == "retry"


async def test_the_signature_never_reaches_a_detail_or_the_body(tmp_path: Path, service: Service, session: aiohttp.ClientSession) -> None:
    service.answers["/teams"] = [Answer(401, {"error": {"code": "DirectApiInvalidSignature",
                                                        "message": f"The signature '{SIG}' is not valid."}})]
    notifier = teams(service, session)
    body = notifier.render(chat_notification(tmp_path))
    delivery = await notifier.send("evt_1", body)
    assert delivery.outcome == "dead" and SIG not in delivery.detail and "[redacted]" in delivery.detail
    assert SIG.encode() not in body and SIG not in repr(notifier.config)
