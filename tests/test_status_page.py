"""The public status page: the pure builder, the store's reads behind it, and ``/status`` and
``/status.json`` served by the real app for incidents run by the real engine on a real store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent import status_page
from agent.api import create_app
from agent.engine import Engine
from agent.maintenance import Match, Window
from agent.status_page import DAY, DAYS, CheckState, build_status, public_incident, render_html, service_of
from agent.store import Store
from agent.timefmt import iso
from tests.test_api import Board, Desk, Facts, Reader

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
TODAY = int(T0 // DAY)
INTERNAL = "db primary 10.0.0.7 is swapping, do not say so"


def snapshot(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "inc_0123456789abcdef", "check": "web", "severity": "high", "status": "open", "phase": "investigating",
        "title": "web failing: connect to 10.0.0.7:8080 refused", "opened_at": iso(T0 - 600), "resolved_at": None,
        "manual": False, "affected_services": [], "target": "http://10.0.0.7:8080/health", "container": "web-1",
        "comments": [{"at": iso(T0), "author": "ann", "text": INTERNAL, "internal": True}],
        "timeline": [{"at": iso(T0), "kind": "opened", "message": "connect to 10.0.0.7:8080 refused", "author": None}],
        "updates": [],
    }
    return base | fields


# -- the builder ----------------------------------------------------------------------------------
def test_overall_state_follows_the_open_incidents_severities() -> None:
    assert status_page.overall_state([]) == "operational"
    assert status_page.overall_state([{"severity": "low"}, {"severity": "high"}]) == "degraded"
    assert status_page.overall_state([{"severity": "medium"}, {"severity": "critical"}]) == "major_outage"
    doc = build_status(title="T", now=T0, checks=[], days=[], open_incidents=[], resolved=[])
    assert doc["overall"] == {"state": "operational", "label": "All systems operational"}
    doc = build_status(title="T", now=T0, checks=[], days=[], open_incidents=[snapshot(severity="critical")],
                       resolved=[])
    assert doc["overall"] == {"state": "major_outage", "label": "Major outage"}


def test_services_group_checks_and_roll_results_up_per_day() -> None:
    assert service_of("web", "Shop", ["edge"]) == "Shop"
    assert service_of("web", None, ["edge", "x"]) == "edge"
    assert service_of("web", None, []) == "web"
    checks = [CheckState("web", "Shop", True), CheckState("api", "Shop", False), CheckState("dns", "dns", None)]
    days = [
        ("web", TODAY, 10, 10), ("api", TODAY, 5, 10),  # today: 15 of 20 passed across the service
        ("web", TODAY - 1, 4, 4),  # yesterday: all passed
        ("web", TODAY - DAYS, 0, 9),  # 91 days ago: outside the bars
        ("gone", TODAY, 0, 3),  # a check no longer configured
    ]
    doc = build_status(title="T", now=T0, checks=checks, days=days, open_incidents=[], resolved=[])
    shop, dns = doc["services"][1], doc["services"][0]
    assert (shop["name"], shop["status"], dns["name"], dns["status"]) == ("Shop", "down", "dns", "unknown")
    assert shop["checks"] == [{"name": "web", "status": "up", "uptime": 100.0},
                              {"name": "api", "status": "down", "uptime": 50.0}]
    assert len(shop["days"]) == DAYS and shop["days"][-1]["date"] == "2026-11-18"
    assert shop["days"][0]["date"] == "2026-08-21"
    assert shop["days"][-1] == {"date": "2026-11-18", "uptime": 75.0, "level": "down"}
    assert shop["days"][-2] == {"date": "2026-11-17", "uptime": 100.0, "level": "up"}
    assert {d["level"] for d in shop["days"][:-2]} == {"none"}
    assert shop["uptime"] == round(100 * 19 / 24, 2)
    assert dns["uptime"] is None and all(d["uptime"] is None for d in dns["days"])


def test_a_service_with_an_open_incident_but_passing_checks_is_degraded() -> None:
    doc = build_status(title="T", now=T0, checks=[CheckState("web", "Shop", True)], days=[],
                       open_incidents=[snapshot()], resolved=[])
    assert doc["services"][0]["status"] == "degraded"
    assert doc["incidents"][0]["heading"] == "Shop - web failing"


def test_public_incidents_carry_updates_newest_first_and_nothing_internal() -> None:
    updates = [
        {"at": iso(T0 - 300), "author": "ann", "phase": "investigating", "message": "Looking into checkout errors"},
        {"at": iso(T0 - 60), "author": "bob", "phase": "identified", "message": "A bad deploy; rolling back"},
    ]
    public = public_incident(snapshot(updates=updates, phase="identified"), {"web": "Shop"})
    assert public == {
        "id": "inc_0123456789abcdef", "heading": "Shop - web failing", "service": "Shop", "summary": "web failing",
        "severity": "high", "status": "Identified", "phase": "identified", "impact": "Partial outage",
        "started_at": iso(T0 - 600), "resolved_at": None,
        "latest_update": {"at": iso(T0 - 60), "phase": "identified", "status": "Identified",
                          "message": "A bad deploy; rolling back"},
        "previous_updates": [{"at": iso(T0 - 300), "phase": "investigating", "status": "Investigating",
                              "message": "Looking into checkout errors"}],
    }
    manual = public_incident(snapshot(manual=True, check="manual", title="Checkout slow",
                                      affected_services=["Checkout", "API"]), {})
    assert manual["heading"] == "Checkout, API - Checkout slow"


def test_the_document_and_the_page_never_show_comments_hosts_targets_or_authors() -> None:
    resolved = snapshot(id="inc_00000000000a", status="resolved", phase="resolved", resolved_at=iso(T0 - 3600))
    too_old = snapshot(id="inc_00000000000b", status="resolved", phase="resolved", resolved_at=iso(T0 - 8 * DAY))
    doc = build_status(title="Acme status", now=T0, checks=[CheckState("web", "Shop", False)],
                       days=[("web", TODAY, 1, 2)], open_incidents=[snapshot(updates=[
                           {"at": iso(T0), "author": "zelda.oncall", "phase": "identified", "message": "Fix deployed"}])],
                       resolved=[resolved, too_old])
    assert [i["id"] for i in doc["resolved"]] == ["inc_00000000000a"]
    for shown in (json.dumps(doc), render_html(doc)):
        for secret in (INTERNAL, "10.0.0.7", "web-1", "zelda.oncall", "refused"):
            assert secret not in shown


def test_the_page_escapes_what_people_wrote() -> None:
    incident = snapshot(manual=True, title="<script>alert(1)</script>")
    html = render_html(build_status(title="A & B", now=T0, checks=[], days=[], open_incidents=[incident],
                                    resolved=[]))
    assert "<script>" not in html and "&lt;script&gt;" in html and "<title>A &amp; B</title>" in html


# -- the store's reads ----------------------------------------------------------------------------
async def test_the_store_counts_results_per_check_and_day(running_store: Store) -> None:
    store = running_store
    rows = [("web", T0 - DAY, True, 0.01, "ok"), ("web", T0 - DAY + 1, False, 0.01, "HTTP 500"),
            ("web", T0, True, 0.01, "ok"), ("api", T0, True, 0.01, "ok"), ("web", T0 - 100 * DAY, True, 0.0, "ok")]
    await store.run(store.results.add, rows)
    days = await store.run(store.results.daily, T0 - 90 * DAY)
    assert days == [("api", TODAY, 1, 1), ("web", TODAY - 1, 1, 2), ("web", TODAY, 1, 1)]


@pytest.fixture
async def engine(running_store: Store) -> Engine:
    return Engine(running_store, [], notify_all=["ops"], clock=lambda: T0)


async def run_incidents(engine: Engine) -> tuple[str, str]:
    """An open SEV-2 with two public updates and an internal comment, and a resolved one."""
    open_one = (await engine.open_manual("Checkout slow", "high", "ann", affected_services=["Checkout"]))["id"]
    await engine.post_update(open_one, "investigating", "We are looking into slow checkouts", "ann")
    await engine.comment(open_one, "ann", INTERNAL, internal=True)
    await engine.post_update(open_one, "identified", "A slow database query; a fix is rolling out", "ann")
    done = (await engine.open_manual("Login errors", "medium", "bob", affected_services=["Login"]))["id"]
    await engine.resolve(done, "bob", root_cause="expired certificate on 10.0.0.7")
    return open_one, done


async def test_the_store_reads_unresolved_and_recently_resolved_without_internal_comments(
    running_store: Store, engine: Engine
) -> None:
    open_one, done = await run_incidents(engine)
    unresolved, resolved = await running_store.run(running_store.incidents.for_status_page, T0 - DAY, 10)
    assert [i["id"] for i in unresolved] == [open_one] and [i["id"] for i in resolved] == [done]
    assert unresolved[0]["comments"] == []
    assert (await running_store.run(running_store.incidents.for_status_page, T0 + 1, 10))[1] == []


# -- the routes -----------------------------------------------------------------------------------
class StoreStatus:
    """``StatusSource`` over a real store, as the daemon's (clock and checks given)."""

    def __init__(self, store: Store, enabled: bool = True) -> None:
        self.store, self.enabled = store, enabled

    async def status_document(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        days = await self.store.run(self.store.results.daily, T0 - DAYS * DAY)
        unresolved, resolved = await self.store.run(self.store.incidents.for_status_page, T0 - 7 * DAY, 10)
        checks = [CheckState("checkout-http", "Checkout", True), CheckState("login-http", "Login", True)]
        windows = [Window("checkout-database-upgrade", Match(check=("checkout-http",)), start=T0 + DAY,
                          end=T0 + DAY + 7200)]
        return build_status(title="Acme status", now=T0, checks=checks, days=days, open_incidents=unresolved,
                            resolved=resolved, windows=windows)


@pytest.fixture
async def status_client(running_store: Store) -> AsyncIterator[tuple[TestClient, StoreStatus]]:
    source = StoreStatus(running_store)
    app = create_app(agent_name="web-01", token="t0ken", health=Facts(), board=Board(), incidents=Reader(),
                     deliveries=Desk(), status=source, clock=lambda: T0)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, source
    await client.close()


async def test_status_json_and_html_need_no_token_and_show_public_updates(
    status_client: tuple[TestClient, StoreStatus], running_store: Store, engine: Engine
) -> None:
    client, _ = status_client
    await running_store.run(running_store.results.add, [("checkout-http", T0 - 10, True, 0.01, "ok")])
    await run_incidents(engine)
    async with client.get("/status.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["overall"]["label"] == "Degraded"
    [incident] = doc["incidents"]
    assert incident["heading"] == "Checkout - Checkout slow" and incident["status"] == "Identified"
    assert incident["latest_update"]["message"] == "A slow database query; a fix is rolling out"
    assert [u["message"] for u in incident["previous_updates"]] == ["We are looking into slow checkouts"]
    assert [i["heading"] for i in doc["resolved"]] == ["Login - Login errors"]
    assert doc["services"][0]["days"][-1]["uptime"] == 100.0
    async with client.get("/status") as r:
        assert r.status == 200 and r.content_type == "text/html"
        html = await r.text()
    assert "Degraded" in html and "Checkout - Checkout slow" in html and "a fix is rolling out" in html
    assert "<script" not in html
    for shown in (json.dumps(doc), html):
        assert INTERNAL not in shown and "10.0.0.7" not in shown
    async with client.get("/api/checks") as r:  # the rest of the API still needs the token
        assert r.status == 401


async def test_a_switched_off_status_page_is_not_found(status_client: tuple[TestClient, StoreStatus]) -> None:
    client, source = status_client
    source.enabled = False
    for path in ("/status", "/status.json"):
        async with client.get(path) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"


# -- a real agent ---------------------------------------------------------------------------------
async def test_a_real_agent_serves_its_status_page_without_the_token_and_can_switch_it_off(
    target: Any, spawn_agent: Any
) -> None:
    import aiohttp

    from tests.fixtures_agent import agent_config

    target.status = 500
    config = agent_config(
        [{"name": "web", "type": "http", "url": target.url, "group": "Shop", "severity": "critical"},
         {"name": "db", "type": "tcp", "host": "127.0.0.1", "port": target.port, "tags": ["Database"]}], [],
        status_title="Acme status",
    )
    config["agent"]["api"]["token"] = "s3cret-t0ken"
    agent = spawn_agent(config)
    await agent.ready()

    async def status() -> dict[str, Any]:
        code, doc = await agent.api("/status.json")
        assert code == 200, doc
        return dict(doc)

    doc = None
    for _ in range(400):
        doc = await status()
        stored = all(s["days"][-1]["uptime"] is not None for s in doc["services"])  # results are written in batches
        if doc["incidents"] and stored and all(s["status"] != "unknown" for s in doc["services"]):
            break
        await asyncio.sleep(0.05)
    assert doc is not None and doc["incidents"], doc
    assert doc["title"] == "Acme status" and doc["overall"]["label"] == "Major outage"
    assert [(s["name"], s["status"]) for s in doc["services"]] == [("Database", "up"), ("Shop", "down")]
    assert doc["incidents"][0]["heading"] == "Shop - web failing"
    assert doc["services"][1]["days"][-1]["level"] == "down"
    assert str(target.port) not in json.dumps(doc)  # no target, no host:port
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{agent.api_port}/status") as r:
            assert r.status == 200 and "Major outage" in await r.text()
    assert (await agent.api("/api/checks"))[0] == 401

    agent.config["agent"]["status_page"] = False
    agent.write_config()
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{agent.api_port}/api/reload",
                          headers={"Authorization": "Bearer s3cret-t0ken"}) as r:
            assert r.status == 200 and (await r.json())["ok"]
    assert (await agent.api("/status.json"))[0] == 404
