"""Maintenance windows and silences: the cron matcher, and the engine against a real SQLite store
with an injected clock — incidents recorded in maintenance, nothing sent and nothing healed, then
exactly one ``incident.opened`` when the maintenance ends with the incident still open."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.api import create_app
from agent.engine import Engine, UnknownSilence
from agent.evidence import EvidenceCollector
from agent.maintenance import Cron, CronError, Match, Window
from agent.store import Store
from checks import CheckContext, build_check
from checks.tcp import TcpCheckConfig
from tests.test_api import Board, Desk, Facts
from tests.test_api_incidents import StoreReader, call
from tests.test_engine import SwitchHealer, feed, switch  # noqa: F401  (a fixture)

T0 = float(calendar.timegm((2026, 11, 29, 2, 0, 0)))  # a Sunday, 02:00 UTC


def at(*ymdhm: int) -> float:
    return float(calendar.timegm((*ymdhm, 0)))


# -- cron ------------------------------------------------------------------------------------
def test_cron_matches_the_minutes_it_names() -> None:
    sunday_3am = Cron.parse("0 3 * * SUN")
    assert sunday_3am.matches(at(2026, 11, 29, 3, 0))
    assert not sunday_3am.matches(at(2026, 11, 29, 3, 1))
    assert not sunday_3am.matches(at(2026, 11, 30, 3, 0))  # a Monday
    assert Cron.parse("0 3 * * 7").matches(at(2026, 11, 29, 3, 0))  # 7 is Sunday too
    every_15 = Cron.parse("*/15 1-2 1,15 jan-mar *")
    assert every_15.matches(at(2026, 2, 15, 2, 45)) and not every_15.matches(at(2026, 2, 15, 2, 50))
    assert not every_15.matches(at(2026, 4, 15, 2, 45))
    # Both day fields restricted: either one matches, as cron does.
    either = Cron.parse("0 0 13 * FRI")
    assert either.matches(at(2026, 11, 13, 0, 0)) and either.matches(at(2026, 11, 27, 0, 0))
    assert not either.matches(at(2026, 11, 26, 0, 0))


@pytest.mark.parametrize("text, says", [
    ("0 3 * *", "expected 5 fields"), ("60 3 * * *", "minute: 60 is outside 0-59"),
    ("0 3 * * MOON", "day of week: expected a number"), ("0 5-3 * * *", "hour: range '5-3' runs backwards"),
    ("*/0 * * * *", "minute: bad step"),
])
def test_cron_errors_name_the_field(text: str, says: str) -> None:
    with pytest.raises(CronError, match=says.replace("*", r"\*")):
        Cron.parse(text)


def test_a_recurring_window_is_open_for_its_duration() -> None:
    window = Window("sunday", cron=Cron.parse("0 3 * * SUN"), duration=7200)
    assert not window.open_at(at(2026, 11, 29, 2, 59))
    assert window.open_at(at(2026, 11, 29, 3, 0)) and window.open_at(at(2026, 11, 29, 4, 59))
    assert not window.open_at(at(2026, 11, 29, 5, 0))


def test_a_match_needs_every_field_given() -> None:
    match = Match(check=("db", "web"), tags=("prod",))
    assert match.covers("db", ["prod", "eu"], None)
    assert not match.covers("db", ["staging"], None) and not match.covers("cache", ["prod"], None)
    assert Match(container=("pg",)).covers("anything", [], "pg")


# -- the engine ------------------------------------------------------------------------------
def engine_for(store: Store, tmp_path: Path, now: dict[str, float], windows: list[Window] = (),  # type: ignore[assignment]
               heal: bool = False) -> Engine:
    extra = {"heal": {"flip_switch": "main", "max_restarts": 2, "within": "15m", "cooldown": "10s"}} if heal else {}
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=1,
                         notify=["ops"], tags=["prod"], **extra))
    return Engine(store, [build_check(cfg, CheckContext())], clients=CheckContext(),
                  evidence=EvidenceCollector(None, tmp_path), notify_all=["ops"], clock=lambda: now["t"],
                  maintenance=windows)


async def sent(store: Store) -> list[str]:
    return [r["event"] for r in await store.run(store.outbox.rows)]


async def the_incident(store: Store) -> dict:
    [summary] = await store.run(store.incidents.list, None, 1)
    found = await store.run(store.incidents.get, summary["id"])
    assert found is not None
    return found


async def test_a_silence_records_without_sending_or_healing_then_releases_one_opened(
    running_store: Store, tmp_path: Path, switch: type[SwitchHealer]  # noqa: F811
) -> None:
    store, now = running_store, {"t": T0}
    engine = engine_for(store, tmp_path, now, heal=True)
    await engine.restore()
    silence = await engine.add_silence(Match(tags=("prod",)), T0 + 3600, "db upgrade", "ann")
    assert silence["status"] == "active" and silence["match"]["tags"] == ["prod"]
    for i in range(5):
        await feed(engine, now, False, T0 + 60 * i)
    incident = await the_incident(store)
    assert incident["in_maintenance"] is True and incident["status"] == "open"
    assert await sent(store) == [] and switch.calls == []  # recorded, not sent, not healed
    assert ("maintenance", f"in maintenance (silence {silence['id']}): nothing sent, nothing healed") in [
        (t["kind"], t["message"]) for t in incident["timeline"]]
    # The silence ends with the incident open: one incident.opened, whatever runs after.
    await feed(engine, now, False, T0 + 3600)
    await engine.release_maintenance()
    await feed(engine, now, False, T0 + 3700)
    await engine.release_maintenance()
    events = await sent(store)
    assert events[:2] == ["incident.opened", "incident.heal_attempted"] and events.count("incident.opened") == 1
    incident = await the_incident(store)
    assert incident["in_maintenance"] is False
    assert [t["kind"] for t in incident["timeline"]].count("maintenance_ended") == 1
    listed = await engine.silences()
    assert [(s["id"], s["status"]) for s in listed] == [(silence["id"], "expired")]
    now["t"] = T0 + 3600 + 86400 + 1
    assert await engine.silences() == []  # listed as expired for a day


async def test_a_restart_in_maintenance_still_releases_once(running_store: Store, tmp_path: Path) -> None:
    store, now = running_store, {"t": T0}
    engine = engine_for(store, tmp_path, now)
    await engine.restore()
    await engine.add_silence(Match(check=("db",)), T0 + 600, None, "ann")
    await feed(engine, now, False, T0)
    await engine.drain(5)
    again = engine_for(store, tmp_path, now)  # a new process: silences and the flag come from the store
    await again.restore()
    await feed(again, now, False, T0 + 300)
    assert await sent(store) == []
    now["t"] = T0 + 601
    await again.release_maintenance()
    third = engine_for(store, tmp_path, now)
    await third.restore()
    await third.release_maintenance()
    await feed(third, now, False, T0 + 700)
    assert await sent(store) == ["incident.opened"]


async def test_removing_a_silence_releases_at_once_and_a_recovery_in_maintenance_sends_nothing(
    running_store: Store, tmp_path: Path
) -> None:
    store, now = running_store, {"t": T0}
    engine = engine_for(store, tmp_path, now)
    await engine.restore()
    silence = await engine.add_silence(Match(check=("db",)), T0 + 3600, None, "ann")
    await feed(engine, now, False, T0)
    now["t"] = T0 + 60
    removed = await engine.remove_silence(silence["id"])
    assert removed["status"] == "expired" and removed["ends_at"] == removed["starts_at"].replace("02:00:00", "02:01:00")
    assert await sent(store) == ["incident.opened"]
    with pytest.raises(UnknownSilence):
        await engine.remove_silence("sil_000000000000")
    # A new silence, a new incident, recovered while silenced: nothing at all is sent for it.
    await feed(engine, now, True, T0 + 61)
    await engine.add_silence(Match(check=("db",)), T0 + 3600, None, "ann")
    await feed(engine, now, False, T0 + 120)
    await feed(engine, now, True, T0 + 180)
    now["t"] = T0 + 4000
    await engine.release_maintenance()
    assert await sent(store) == ["incident.opened", "incident.resolved"]


async def test_a_window_with_heal_true_heals_but_sends_nothing(
    running_store: Store, tmp_path: Path, switch: type[SwitchHealer]  # noqa: F811
) -> None:
    store, now = running_store, {"t": T0 + 3600}  # 03:00 on a Sunday
    window = Window("sunday", cron=Cron.parse("0 3 * * SUN"), duration=7200, heal=True)
    engine = engine_for(store, tmp_path, now, [window], heal=True)
    await engine.restore()
    await feed(engine, now, False, T0 + 3600)
    assert switch.calls == ["main"] and await sent(store) == []
    assert (await the_incident(store))["in_maintenance"] is True
    await feed(engine, now, False, T0 + 3 * 3600)  # 05:00: the window is over
    assert (await sent(store))[:1] == ["incident.opened"]


async def test_a_fixed_window_suppresses_then_releases(running_store: Store, tmp_path: Path) -> None:
    store, now = running_store, {"t": T0}
    engine = engine_for(store, tmp_path, now, [Window("upgrade", start=T0 - 60, end=T0 + 600)])
    await engine.restore()
    await feed(engine, now, False, T0)
    assert await sent(store) == []
    now["t"] = T0 + 600
    await engine.release_maintenance()
    assert await sent(store) == ["incident.opened"]


# -- the API ---------------------------------------------------------------------------------
async def test_silences_through_the_api(running_store: Store, tmp_path: Path) -> None:
    now = {"t": T0}
    engine = engine_for(running_store, tmp_path, now)
    await engine.restore()
    app = create_app(agent_name="web-01", token="t0ken", health=Facts(), board=Board(),
                     incidents=StoreReader(running_store), deliveries=Desk(), desk=engine, silences=engine,
                     clock=lambda: now["t"])
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        status, made = await call(client, "POST", "/api/silences", {
            "match": {"check": ["db"]}, "duration": "2h", "comment": "upgrade", "created_by": "ann"})
        assert status == 201, made
        assert made["status"] == "active" and made["created_by"] == "ann" and made["comment"] == "upgrade"
        assert made["ends_at"] == "2026-11-29T04:00:00.000Z"
        status, until = await call(client, "POST", "/api/silences", {
            "match": {"container": ["pg"]}, "ends_at": "2026-11-29T03:00:00Z"})
        assert status == 201 and until["ends_at"] == "2026-11-29T03:00:00.000Z" and until["created_by"] == "api"
        status, listed = await call(client, "GET", "/api/silences")
        assert status == 200 and {s["id"] for s in listed} == {made["id"], until["id"]}
        status, gone = await call(client, "DELETE", f"/api/silences/{made['id']}")
        assert status == 200 and gone["status"] == "expired"
        for body, field in [
            ({"duration": "2h"}, "match"), ({"match": {}, "duration": "2h"}, "match"),
            ({"match": {"check": []}, "duration": "2h"}, "match.check"),
            ({"match": {"host": ["x"]}, "duration": "2h"}, "match.host"),
            ({"match": {"check": ["db"]}}, "duration"),
            ({"match": {"check": ["db"]}, "duration": "2h", "ends_at": "2026-11-29T03:00:00Z"}, "duration"),
            ({"match": {"check": ["db"]}, "duration": "soon"}, "duration"),
            ({"match": {"check": ["db"]}, "ends_at": "tomorrow"}, "ends_at"),
            ({"match": {"check": ["db"]}, "ends_at": "2026-11-29T03:00:00"}, "ends_at"),
        ]:
            status, answer = await call(client, "POST", "/api/silences", body)
            assert status == 400 and answer["error"]["field"] == field, (body, answer)
        assert (await call(client, "DELETE", "/api/silences/sil_000000000000"))[0] == 404
        assert (await call(client, "DELETE", "/api/silences/nope"))[0] == 400
        assert (await call(client, "GET", "/api/silences", token=None))[0] == 401
        assert len(await running_store.run(running_store.silences.ending_after, 0)) == 2  # refusals made none
    finally:
        await client.close()


# -- the `maintenance:` section of the config ----------------------------------------------------


def test_maintenance_windows_load_from_the_config_with_located_errors(tmp_path: Path) -> None:
    import textwrap

    from agent.config import ConfigError, load_config

    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""
        maintenance:
          - {name: upgrade, start: "2026-12-01T02:00:00Z", end: "2026-12-01T04:00:00Z", match: {check: api}}
          - {name: weekly, cron: "0 3 * * SUN", duration: 2h, heal: true}
    """))
    config = load_config(path, {})
    fixed, weekly = (m.window() for m in config.maintenance)
    assert (fixed.start, fixed.end, fixed.match) == (
        calendar.timegm((2026, 12, 1, 2, 0, 0)), calendar.timegm((2026, 12, 1, 4, 0, 0)), Match(check=("api",)))
    assert weekly.cron is not None and weekly.duration == 7200 and weekly.heal
    assert weekly.open_at(calendar.timegm((2026, 11, 29, 3, 30, 0))) and not weekly.open_at(
        calendar.timegm((2026, 11, 29, 5, 30, 0)))

    path.write_text(textwrap.dedent("""
        maintenance:
          - {name: a, cron: "0 25 * * *", duration: 1h}
          - {name: b, start: "2026-12-01T02:00:00", end: "2026-12-01T04:00:00Z"}
          - {name: c, start: "2026-12-01T04:00:00Z", end: "2026-12-01T02:00:00Z"}
          - {name: d, cron: "0 3 * * *"}
          - {name: e}
    """))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.errors == [
        "maintenance[0].cron: invalid cron expression: hour: 25 is outside 0-23",
        "maintenance[1].start: needs a time zone (write it in UTC, e.g. 2026-12-01T02:00:00Z)",
        "maintenance[2]: a fixed window needs start and end, end after start",
        "maintenance[3]: a recurring window needs cron and duration",
        "maintenance[4]: needs start and end, or cron and duration",
    ]


async def test_a_configured_window_holds_back_an_incident_until_it_ends(target, receiver, spawn_agent) -> None:
    """A real agent: a fixed window covering now records the incident quietly; when it ends, the
    webhook gets exactly one incident.opened."""
    import asyncio
    import time
    from datetime import UTC, datetime

    from tests.fixtures_agent import agent_config, wait_until
    from tests.test_e2e import ENV, webhook

    now = time.time()
    ends = now + 4

    def iso(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    cfg = agent_config([{"name": "api", "type": "http", "url": target.url}], [webhook(receiver)])
    cfg["maintenance"] = [{"name": "now", "start": iso(now - 60), "end": iso(ends)}]
    target.status = 500
    agent = spawn_agent(cfg, ENV)
    await agent.ready()
    def opened_in_log() -> list[dict]:
        return [e for e in agent.log_events() if e.get("event") == "incident.opened"]

    incident = await wait_until(opened_in_log, 10, "the incident recorded")
    assert time.time() < ends and receiver.of("incident.opened") == []  # recorded, not sent
    await wait_until(lambda: receiver.of("incident.opened"), 20, "the incident notified once the window ended")
    await asyncio.sleep(1.5)  # a few more results and release passes: still exactly one
    assert len(receiver.of("incident.opened")) == 1
    assert receiver.of("incident.opened")[0]["incident"]["id"] == incident[0]["incident_id"]
