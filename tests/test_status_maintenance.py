"""Scheduled maintenance on the status page: the cron windows' next and last start (stepping a field
at a time, checked against a minute-by-minute walk), a window's spans over the week ahead, the page's
list in HTML and JSON, and a real agent that shows its config's windows but never its silences."""

from __future__ import annotations

import calendar
import json
from typing import Any

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.maintenance import Cron, Match, Window
from agent.status_page import CheckState, build_status, render_html, scheduled_maintenance
from agent.timefmt import iso

T0 = float(calendar.timegm((2026, 11, 29, 2, 0, 0)))  # a Sunday, 02:00 UTC
HOUR, DAY = 3600.0, 86400.0


def at(*ymdhm: int) -> float:
    return float(calendar.timegm((*ymdhm, 0)))


def walk_back(cron: Cron, now: float, within: float) -> float | None:
    minute = now - now % 60
    while minute > now - within:
        if cron.matches(minute):
            return minute
        minute -= 60
    return None


def walk_forward(cron: Cron, now: float, within: float) -> float | None:
    minute = -(-now // 60) * 60
    while minute < now + within:
        if cron.matches(minute):
            return minute
        minute += 60
    return None


EXPRESSIONS = ["0 3 * * SUN", "*/15 * * * *", "30 2 1,15 * *", "0 0 29 2 *", "5 4 * * 1-5", "0 12 13 * FRI",
               "59 23 31 12 *", "* * * * *", "0 */6 * jan-mar *", "7,53 1-3 * * sat"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.floats(1.7e9, 2.0e9), st.sampled_from([59.0, 60.0, 3600.0, 7200.5,
                                                                              DAY, 7 * DAY, 40 * DAY]))
def test_next_and_last_start_agree_with_a_walk_minute_by_minute(expression: str, now: float, within: float) -> None:
    cron = Cron.parse(expression)
    for moment in (now, now - now % 60):
        assert cron.last_start(moment, within) == walk_back(cron, moment, within)
        assert cron.next_start(moment, within) == walk_forward(cron, moment, within)


def test_a_fixed_window_has_one_span_while_it_is_ahead_or_open() -> None:
    window = Window("db-upgrade", start=T0 + DAY, end=T0 + DAY + 2 * HOUR)
    assert window.spans(T0, T0 + 7 * DAY) == [(T0 + DAY, T0 + DAY + 2 * HOUR)]
    assert window.spans(T0 + DAY + HOUR, T0 + 8 * DAY) == [(T0 + DAY, T0 + DAY + 2 * HOUR)]  # open now
    assert window.spans(T0 + DAY + 2 * HOUR, T0 + 9 * DAY) == []  # over
    assert window.spans(T0, T0 + DAY) == []  # beyond the horizon


def test_a_cron_window_has_a_span_per_occurrence_and_overlapping_ones_make_one() -> None:
    nightly = Window("nightly", cron=Cron.parse("0 3 * * *"), duration=2 * HOUR)
    spans = nightly.spans(T0, T0 + 7 * DAY)
    assert all(end == start + 2 * HOUR for start, end in spans)
    assert [iso(s) for s, _ in spans] == [f"2026-{m}T03:00:00.000Z" for m in
                                          ("11-29", "11-30", "12-01", "12-02", "12-03", "12-04", "12-05")]
    ongoing = nightly.spans(T0 + 2 * HOUR, T0 + 9 * DAY, limit=2)  # 04:00: the one that began at 03:00
    assert ongoing == [(T0 + HOUR, T0 + 3 * HOUR), (T0 + DAY + HOUR, T0 + DAY + 3 * HOUR)]
    always = Window("always", cron=Cron.parse("*/30 * * * *"), duration=HOUR)  # each runs into the next
    [(start, end)] = always.spans(T0, T0 + 2 * HOUR)
    assert start < T0 and end == T0 + 2 * HOUR - 30 * 60 + HOUR
    assert Window("feb29", cron=Cron.parse("0 0 29 2 *"), duration=HOUR).spans(T0, T0 + 7 * DAY) == []


CHECKS = [CheckState("db", "Database", True, tags=("prod",), container="pg"),
          CheckState("web", "Shop", True, tags=("prod", "edge")), CheckState("cache", "Cache", None)]


def test_the_page_lists_maintenance_ahead_and_in_progress_with_the_services_it_affects() -> None:
    windows = [
        Window("db-upgrade", Match(check=("db",)), start=T0 + DAY, end=T0 + DAY + 2 * HOUR),
        Window("weekly-patching", Match(tags=("prod",)), heal=True, cron=Cron.parse("0 1 * * SUN"),
               duration=2 * HOUR),
        Window("pg-vacuum", Match(container=("pg",)), start=T0 + 8 * DAY, end=T0 + 9 * DAY),  # beyond a week
        Window("ghost", Match(check=("not-configured",)), start=T0, end=T0 + HOUR),  # covers no shown check
        Window("old", start=T0 - 2 * HOUR, end=T0 - HOUR),
    ]
    listed = scheduled_maintenance(windows, CHECKS, T0)
    assert listed == [
        {"name": "weekly-patching", "status": "In progress", "in_progress": True,
         "starts_at": "2026-11-29T01:00:00.000Z", "ends_at": "2026-11-29T03:00:00.000Z",
         "services": ["Database", "Shop"]},
        {"name": "db-upgrade", "status": "Scheduled", "in_progress": False,
         "starts_at": "2026-11-30T02:00:00.000Z", "ends_at": "2026-11-30T04:00:00.000Z", "services": ["Database"]},
        {"name": "weekly-patching", "status": "Scheduled", "in_progress": False,  # next Sunday, within the week
         "starts_at": "2026-12-06T01:00:00.000Z", "ends_at": "2026-12-06T03:00:00.000Z",
         "services": ["Database", "Shop"]},
    ]
    doc = build_status(title="Acme status", now=T0, checks=CHECKS, days=[], open_incidents=[], resolved=[],
                       windows=windows)
    assert doc["maintenance"] == listed
    html = render_html(doc)
    assert "Scheduled maintenance" in html and "weekly-patching" in html and "db-upgrade" in html
    assert "In progress" in html and "2026-11-30 02:00 UTC" in html and "Database, Shop" in html
    for hidden in ("ghost", "pg-vacuum", "not-configured", ">old<"):
        assert hidden not in html
    empty = build_status(title="T", now=T0, checks=CHECKS, days=[], open_incidents=[], resolved=[])
    assert empty["maintenance"] == [] and "Scheduled maintenance" not in render_html(empty)


def test_the_page_lists_at_most_twenty_and_a_window_at_most_seven_times() -> None:
    windows = [Window(f"w{i}", cron=Cron.parse(f"{i} * * * *"), duration=60) for i in range(5)]
    listed = scheduled_maintenance(windows, CHECKS, T0)
    assert len(listed) == 20 and all(m["services"] == ["Cache", "Database", "Shop"] for m in listed)
    starts = [m["starts_at"] for m in listed]
    assert starts == sorted(starts)
    assert max(sum(1 for m in listed if m["name"] == f"w{i}") for i in range(5)) <= 7


# -- a real agent ---------------------------------------------------------------------------------
async def test_a_real_agent_shows_its_maintenance_windows_but_not_its_silences(target: Any, spawn_agent: Any) -> None:
    from tests.fixtures_agent import agent_config

    config = agent_config(
        [{"name": "web", "type": "http", "url": target.url, "group": "Shop"},
         {"name": "db", "type": "tcp", "host": "127.0.0.1", "port": target.port, "tags": ["Database"]}], [],
    )
    config["maintenance"] = [
        {"name": "db-upgrade", "start": "2099-12-01T02:00:00Z", "end": "2099-12-01T04:00:00Z",
         "match": {"check": ["db"]}},
        {"name": "nightly-backup", "cron": "30 1 * * *", "duration": "30m", "match": {"tags": ["Database"]}},
        {"name": "ghost-window", "cron": "0 * * * *", "duration": "1m", "match": {"check": ["nothing-here"]}},
    ]
    agent = spawn_agent(config)
    await agent.ready()
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{agent.api_port}"
        body = {"match": {"check": ["web"]}, "duration": "2h", "comment": "secret-silence-comment"}
        async with s.post(f"{url}/api/silences", json=body) as r:
            assert r.status == 201, await r.text()
            silence = await r.json()
        async with s.get(f"{url}/status.json") as r:
            assert r.status == 200
            doc = await r.json()
        async with s.get(f"{url}/status") as r:
            html = await r.text()
    listed = doc["maintenance"]
    assert {m["name"] for m in listed} == {"nightly-backup"}  # the fixed one is years away
    assert len(listed) == 7 and all(m["services"] == ["Database"] for m in listed)
    assert all(m["starts_at"].endswith("T01:30:00.000Z") and m["ends_at"].endswith("T02:00:00.000Z") for m in listed)
    assert "nightly-backup" in html and "Scheduled maintenance" in html
    for shown in (json.dumps(doc), html):
        assert silence["id"] not in shown and "secret-silence-comment" not in shown and "ghost-window" not in shown
