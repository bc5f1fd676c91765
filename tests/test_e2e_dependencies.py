"""One page for one cause, end to end: a real agent, a "database" that is a real aiohttp server the
test stops, a service that fails because of it, and a webhook receiver verifying every signature."""

from __future__ import annotations

import signal
from typing import Any

from tests.fixtures_agent import SECRET, Receiver, Target, agent_config, poll, wait_until


async def test_the_database_down_pages_once_with_its_impact_then_the_dependant_opens_when_it_is_back(
    spawn_agent: Any, receiver: Receiver, payload_schema: Any
) -> None:
    db, api = Target(), Target()
    await db.start()
    await api.start()
    try:
        cfg = agent_config(
            [
                {"name": "db", "type": "http", "url": db.url},
                # A dependant waits a little longer than its cause before it opens (as the README
                # advises): failing together, the cause's incident is the one that opens first.
                {"name": "api", "type": "http", "url": api.url, "depends_on": ["db"], "open_after": "1s"},
            ],
            [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": SECRET}],
        )
        agent = spawn_agent(cfg)
        await agent.ready()

        async def checks() -> dict[str, Any]:
            return {c["name"]: c for c in (await agent.api("/api/checks"))[1]["checks"]}

        await poll(checks, lambda c: c["db"]["state"] == c["api"]["state"] == "passing", 15, "both passing")

        # The database goes away; the service in front of it fails with it.
        await db.stop()
        api.status = 503
        await wait_until(lambda: receiver.of("incident.updated"), 15, "db's incident listing its impact")
        [opened] = receiver.of("incident.opened")
        assert opened["incident"]["check"] == "db"
        [updated] = receiver.of("incident.updated")
        assert updated["changes"] == ["impact"]
        impact = updated["incident"]["impact"]
        assert [i["check"] for i in impact] == ["api"]
        held = impact[0]["incident_id"]
        status, incident = await agent.api(f"/api/incidents/{held}")
        assert status == 200 and incident["suppressed_by"] == opened["incident"]["id"]
        assert incident["status"] == "open"

        # The database is back while the service still fails: now (and only now) it pages, once.
        await db.start()
        await wait_until(lambda: receiver.of("incident.resolved"), 15, "db's incident resolved")
        await wait_until(lambda: len(receiver.of("incident.opened")) == 2, 15, "api's incident.opened")
        released = receiver.of("incident.opened")[1]
        assert released["incident"]["check"] == "api" and released["incident"]["id"] == held
        assert released["incident"]["suppressed_by"] is None
        runs = (await checks())["api"]["last_result"]["at"]
        await poll(checks, lambda c: c["api"]["last_result"]["at"] != runs, 10, "api to run again")
        await poll(checks, lambda c: c["api"]["last_result"]["at"] != runs, 10, "and again")
        assert [e["incident"]["check"] for e in receiver.of("incident.opened")] == ["db", "api"]
        resolved = receiver.of("incident.resolved")[0]
        assert [i["check"] for i in resolved["incident"]["impact"]] == ["api"]
        for event in receiver.events:
            assert list(payload_schema.iter_errors(event)) == []
        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        await db.stop()
        await api.stop()
