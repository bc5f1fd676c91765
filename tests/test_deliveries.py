"""The deliveries: the store's list and revive, the API routes over a ``DeliveryDesk``, and end to end:
a receiver that rejects an event (dead), is fixed, and ``lifeguard deliveries retry`` redelivers it."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest

from agent.store import Store
from tests.fixtures_agent import ROOT, SECRET, agent_config, poll, wait_until
from tests.test_api import T0, Client, Desk, Sources, get
from tests.test_api import api as api  # noqa: F401 - the fixture, shared
from tests.test_outbox import incident_with_events

INC = "inc_0123456789abcdef"


def row(delivery_id: int, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": delivery_id, "event_id": f"evt_{delivery_id:016x}", "event": "incident.opened", "incident_id": INC,
        "notifier": "ops", "status": status, "attempts": 2, "last_error": None, "next_attempt_at": T0 + 5,
        "delivered_at": None, **extra,
    }


async def post(client: Any, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.post(path, headers=headers) as r:
        return r.status, await r.json()


# -- the store ---------------------------------------------------------------------------------------
async def test_the_store_lists_newest_first_filtered_and_revives_only_dead_ones(running_store: Store) -> None:
    store = running_store
    await incident_with_events(store, 2, notifiers=("ops", "chat"))
    rows = await store.run(store.outbox.list)
    assert [(r["id"], r["notifier"], r["event"]) for r in rows] == [
        (4, "chat", "incident.heal_attempted"), (3, "ops", "incident.heal_attempted"),
        (2, "chat", "incident.opened"), (1, "ops", "incident.opened"),
    ]
    assert set(rows[0]) == {"id", "event_id", "event", "incident_id", "notifier", "status", "attempts",
                            "last_error", "next_attempt_at", "delivered_at"}
    assert [r["id"] for r in await store.run(store.outbox.list, None, "ops", 1)] == [3]
    item = (await store.run(store.outbox.due, "ops", time.time() + 1))[0]
    await store.run(store.outbox.mark_dead, item, "HTTP 400")
    assert [r["id"] for r in await store.run(store.outbox.list, "dead", None, 50)] == [1]

    assert await store.run(store.outbox.revive, 3, T0) is False  # pending, not dead
    assert await store.run(store.outbox.revive, 99, T0) is False
    assert await store.run(store.outbox.revive, 1, T0) is True
    revived = await store.run(store.outbox.get, 1)
    assert revived is not None
    assert (revived["status"], revived["attempts"], revived["next_attempt_at"]) == ("pending", 1, T0)
    assert revived["last_error"] == "HTTP 400"  # why it died, until the next attempt says otherwise
    assert await store.run(store.outbox.get, 99) is None


# -- the routes --------------------------------------------------------------------------------------
async def test_deliveries_are_listed_with_iso_times_and_the_filters_passed_on(api: Client) -> None:
    s = Sources(deliveries=Desk({1: row(1, "dead", last_error="HTTP 400: nope"),
                                 2: row(2, "delivered", delivered_at=T0), 3: row(3, "pending")}))
    client = await api(s)
    status, body = await get(client, "/api/deliveries")
    assert status == 200
    assert body["deliveries"][0] == {
        "id": 3, "event_id": "evt_0000000000000003", "event": "incident.opened", "incident_id": INC,
        "notifier": "ops", "status": "pending", "attempts": 2, "last_error": None,
        "next_attempt_at": "2026-11-18T11:06:45.000Z", "delivered_at": None,
    }
    assert body["deliveries"][1]["delivered_at"] == "2026-11-18T11:06:40.000Z"
    assert body["deliveries"][1]["next_attempt_at"] is None  # only a pending one has a next attempt
    assert [d["id"] for d in body["deliveries"]] == [3, 2, 1]
    await get(client, "/api/deliveries?status=dead&notifier=chat&limit=1000")
    assert s.deliveries.asked == [(None, None, 50), ("dead", "chat", 1000)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=failed", "status: expected one of pending, dead, delivered, got 'failed'"),
        ("notifier=", "notifier: expected a notifier name, got ''"),
        ("limit=0", "limit: expected an integer 1..1000, got '0'"),
        ("limit=1001", "limit: expected an integer 1..1000, got '1001'"),
        ("limit=%C2%B2", "limit: expected an integer 1..1000, got '²'"),
    ],
)
async def test_bad_delivery_list_parameters_are_400(api: Client, query: str, message: str) -> None:
    status, body = await get(await api(), f"/api/deliveries?{query}")
    assert status == 400 and body == {"error": {"code": "bad_parameter", "message": message}}


async def test_retry_queues_a_dead_delivery_and_refuses_the_rest(api: Client) -> None:
    s = Sources(deliveries=Desk({1: row(1, "dead"), 2: row(2, "delivered", delivered_at=T0)}))
    client = await api(s)
    status, body = await post(client, "/api/deliveries/1/retry")
    assert status == 200 and body["status"] == "pending" and body["attempts"] == 2
    assert body["next_attempt_at"] == "2026-11-18T11:06:40.000Z"
    assert await post(client, "/api/deliveries/2/retry") == (
        409, {"error": {"code": "conflict", "message": "delivery 2 is delivered, not dead"}})
    assert await post(client, "/api/deliveries/1/retry") == (  # pending now
        409, {"error": {"code": "conflict", "message": "delivery 1 is pending, not dead"}})
    assert await post(client, "/api/deliveries/7/retry") == (
        404, {"error": {"code": "not_found", "message": "no delivery 7"}})
    for bad in ("x1", "-1", "1.0", "%C2%B2", "1" * 19):
        status, body = await post(client, f"/api/deliveries/{bad}/retry")
        assert status == 400 and body["error"]["code"] == "bad_id", bad
    assert (await get(client, "/api/deliveries/1/retry"))[0] == 405


async def test_with_a_token_both_routes_need_it(api: Client) -> None:
    s = Sources(deliveries=Desk({1: row(1, "dead")}))
    client = await api(s, token="t0ken")
    assert (await get(client, "/api/deliveries"))[0] == 401
    assert (await post(client, "/api/deliveries/1/retry"))[0] == 401
    assert s.deliveries.rows[1]["status"] == "dead"
    assert (await post(client, "/api/deliveries/1/retry", token="t0ken"))[0] == 200


# -- end to end ----------------------------------------------------------------------------------------
async def lifeguard(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_dead_delivery_retried_from_the_command_line_is_redelivered_at_once(
    target, receiver, spawn_agent
) -> None:
    receiver.status = 400  # the receiver rejects: the event goes dead at once
    cfg = agent_config(
        [{"name": "api", "type": "http", "url": target.url}],
        [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": SECRET, "timeout": "1s"}],
        api={"listen": agent_config([], [])["agent"]["api"]["listen"], "token": "t0ken-for-ops"},
    )
    agent = spawn_agent(cfg)
    await agent.ready()
    config = str(agent.config_path)
    target.status = 500
    await wait_until(lambda: receiver.requests, 10, "the rejected incident.opened")

    async def dead() -> list[dict[str, Any]]:
        status, body = await agent.api("/api/deliveries?status=dead", token="t0ken-for-ops")
        assert status == 200
        return body["deliveries"]

    rows = await poll(dead, bool, 10, "a dead delivery")
    assert rows[0]["event"] == "incident.opened" and rows[0]["attempts"] == 1
    assert rows[0]["last_error"].startswith("HTTP 400")

    code, out, err = await lifeguard("deliveries", "list", "--status", "dead", "-c", config)
    assert code == 0, err
    assert f"{rows[0]['id']}  " in out and "incident.opened" in out and "last error: HTTP 400" in out

    receiver.status = 200  # fixed
    asked = time.monotonic()
    code, out, err = await lifeguard("deliveries", "retry", str(rows[0]["id"]), "-c", config)
    assert code == 0, err
    assert f"delivery {rows[0]['id']} (incident.opened of {rows[0]['incident_id']} to ops) is queued again" in out
    opened = await wait_until(lambda: receiver.of("incident.opened"), 10, "the redelivered incident.opened")
    assert time.monotonic() - asked < 10  # not at the worker's next idle wake-up (60 s)
    assert opened[0]["event_id"] == rows[0]["event_id"]

    code, out, err = await lifeguard("deliveries", "retry", str(rows[0]["id"]), "-c", config)
    assert code == 1 and "409" in err and "not dead" in err
    code, out, err = await lifeguard("deliveries", "retry", "999999", "-c", config)
    assert code == 1 and "no delivery 999999" in err


async def test_without_a_running_agent_the_commands_say_so(tmp_path) -> None:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(agent_config([], [])))
    for args in (["list"], ["retry", "1"]):
        code, out, err = await lifeguard("deliveries", *args, "-c", str(path))
        assert code == 1 and out == ""
        assert "no agent answers at http://127.0.0.1:" in err and "connection refused" in err

