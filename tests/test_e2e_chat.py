"""End to end: ``lifeguard run`` sends one incident to Slack, Discord and Teams at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.fixtures_agent import agent_config, wait_until
from tests.fixtures_chat import Answer, Service

SLACK = "/slack/services/T0000000/B0000000/sLaCkT0k3nThatMustNotLeak"
DISCORD = "/discord/api/webhooks/1234567890/dIsCoRdT0k3nThatMustNotLeak"
TEAMS = "/teams/workflows/0a1b2c3d/triggers/manual/paths/invoke"
TEAMS_QUERY = "api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=tEaMsSiGThatMustNotLeak"


@pytest.fixture
async def services() -> AsyncIterator[Service]:
    s = Service()
    s.default = {"/slack": Answer(200, "ok"), "/discord": Answer(204), "/teams": Answer(202, "")}
    await s.start()
    yield s
    await s.stop()


async def test_an_incident_reaches_slack_discord_and_teams_opened_then_resolved(target, services, spawn_agent) -> None:
    # Each service first refuses once the way it does under load: the outbox retries, order holds.
    services.answers = {
        "/slack": [Answer(429, "rate_limited", {"Retry-After": "0"})],
        "/discord": [Answer(429, {"message": "You are being rate limited.", "retry_after": 0.1, "global": False})],
        "/teams": [Answer(503, "")],
    }
    cfg = agent_config(
        [{"name": "api", "type": "http", "url": target.url, "severity": "SEV-1"}],
        [
            {"name": "slack", "type": "slack", "url": services.url(SLACK), "timeout": "1s"},
            {"name": "discord", "type": "discord", "url": services.url(DISCORD), "timeout": "1s"},
            {"name": "teams", "type": "teams", "url": services.url(f"{TEAMS}?{TEAMS_QUERY}"), "timeout": "1s"},
        ],
    )
    agent = spawn_agent(cfg)
    await agent.ready()
    await wait_until(lambda: target.hits >= 2, 10, "the target to be checked")
    target.status, target.body = 500, "<b>database</b> is *down* @channel"

    def delivered(prefix: str, n: int) -> list[dict]:
        answered_ok = [s.json() for s in services.of(prefix)]
        return answered_ok if len(answered_ok) >= n else []

    for prefix in ("/slack", "/discord", "/teams"):
        await wait_until(lambda p=prefix: delivered(p, 2), 15, f"{prefix}: incident opened (after one refusal)")
    target.status, target.body = 200, "ok"
    for prefix in ("/slack", "/discord", "/teams"):
        await wait_until(lambda p=prefix: delivered(p, 3), 15, f"{prefix}: incident resolved")

    slack = [s.json() for s in services.of("/slack")]
    assert slack[0] == slack[1]  # the retry sends the body rendered at the first attempt
    assert [m["text"] for m in slack[1:3]] == [
        "[SEV-1][OPENED] api failing: HTTP 500", slack[2]["text"]]
    assert slack[2]["text"].startswith("[SEV-1][RESOLVED] api recovered after ")
    assert all(s.path == SLACK for s in services.of("/slack"))

    discord = [s.json() for s in services.of("/discord")]
    titles = [m["embeds"][0]["title"] for m in discord[1:3]]
    assert titles[0] == "\\[SEV\\-1\\]\\[OPENED\\] api failing\\: HTTP 500"
    assert "RESOLVED" in titles[1] and "recovered after" in titles[1]
    assert all(m["allowed_mentions"] == {"parse": []} for m in discord)

    teams = services.of("/teams")
    assert all(s.query == TEAMS_QUERY for s in teams)  # the signed query, byte for byte
    cards = [s.json()["attachments"][0]["content"] for s in teams[1:3]]
    assert [c["body"][0]["color"] for c in cards] == ["Attention", "Good"]
    assert "OPENED" in cards[0]["body"][0]["text"] and "RESOLVED" in cards[1]["body"][0]["text"]

    logs = agent.log_text()
    everything = logs + json.dumps([s.json() for s in services.seen])
    for token in ("sLaCkT0k3nThatMustNotLeak", "dIsCoRdT0k3nThatMustNotLeak", "tEaMsSiGThatMustNotLeak"):
        assert token not in everything
    # The service has the request before the agent logs its answer: wait for the sixth line.
    await wait_until(lambda: sum(e.get("event") == "delivery.delivered" for e in agent.log_events()) >= 6,
                     10, "six deliveries logged", step=0.2)
