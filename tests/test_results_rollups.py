"""Result roll-ups: per check and UTC minute and day, written with the results, against a real SQLite
file; retention that drops raw results and keeps roll-ups; migration 7 over a version 6 database; the
status page's 90 days read from the day roll-ups across a restart; the storage bench's smoke run."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.status_page import DAY, DAYS, CheckState, build_status
from agent.store import Store, migrations

ROOT = Path(__file__).resolve().parent.parent
MIDNIGHT = 1_795_046_400.0  # 2026-11-19T00:00:00Z
assert MIDNIGHT % DAY == 0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "lifeguard.db")
    s.open()
    yield s  # type: ignore[misc]
    s.close()


def day_rows(store: Store) -> list[tuple[int, str, int, int, float, float]]:
    return [tuple(r) for r in store.db.execute(  # type: ignore[misc]
        "SELECT day, check_name, total, failing, latency_sum, latency_max FROM results_day ORDER BY day, check_name")]


def minute_rows(store: Store) -> list[tuple[int, str, int, int, float, float]]:
    return [tuple(r) for r in store.db.execute(  # type: ignore[misc]
        "SELECT minute, check_name, total, failing, latency_sum, latency_max FROM results_minute"
        " ORDER BY minute, check_name")]


def test_a_batch_is_summed_per_check_and_minute_then_day(store: Store) -> None:
    store.results.add([
        ("web", MIDNIGHT - 30, True, 0.5, "ok"), ("web", MIDNIGHT - 1, False, 2.0, "HTTP 500"),
        ("web", MIDNIGHT, True, 0.25, "ok"), ("db", MIDNIGHT + 59.9, False, 1.0, "refused"),
    ])
    last_minute, first_minute = int(MIDNIGHT // 60) - 1, int(MIDNIGHT // 60)
    assert minute_rows(store) == [(last_minute, "web", 2, 1, 2.5, 2.0), (first_minute, "db", 1, 1, 1.0, 1.0),
                                  (first_minute, "web", 1, 0, 0.25, 0.25)]
    today = int(MIDNIGHT // DAY)
    assert day_rows(store) == [(today - 1, "web", 2, 1, 2.5, 2.0), (today, "db", 1, 1, 1.0, 1.0),
                               (today, "web", 1, 0, 0.25, 0.25)]


def test_roll_ups_match_the_raw_results_across_flushes_and_a_utc_midnight(store: Store) -> None:
    today = int(MIDNIGHT // DAY)
    # First flush: two results in the last minute of the 18th, one in the first of the 19th.
    store.results.add([("web", MIDNIGHT - 50, True, 0.1, "ok"), ("web", MIDNIGHT - 10, False, 0.7, "HTTP 500"),
                       ("web", MIDNIGHT + 5, True, 0.2, "ok")])
    # Second flush: the same minutes again (UPSERT adds), and another check.
    store.results.add([("web", MIDNIGHT - 5, True, 0.3, "ok"), ("web", MIDNIGHT + 30, False, 0.9, "timeout"),
                       ("api", MIDNIGHT + 61, True, 0.05, "ok")])
    assert store.results.per_minute("web", MIDNIGHT - 60, MIDNIGHT + 60) == [
        {"minute": MIDNIGHT - 60, "total": 3, "failing": 1, "latency_sum": pytest.approx(1.1), "latency_max": 0.7},
        {"minute": MIDNIGHT, "total": 2, "failing": 1, "latency_sum": pytest.approx(1.1), "latency_max": 0.9},
    ]
    assert store.results.per_minute("api", MIDNIGHT, MIDNIGHT + 60) == []  # [since, until): 00:01 is outside
    assert day_rows(store) == [
        (today - 1, "web", 3, 1, pytest.approx(1.1), 0.7),
        (today, "api", 1, 0, 0.05, 0.05),
        (today, "web", 2, 1, pytest.approx(1.1), 0.9),
    ]
    assert store.results.daily(MIDNIGHT - DAY) == [("api", today, 1, 1), ("web", today - 1, 2, 3), ("web", today, 1, 2)]
    assert store.results.daily(MIDNIGHT - 1) == [("api", today, 1, 1), ("web", today - 1, 2, 3), ("web", today, 1, 2)]
    assert store.results.daily(MIDNIGHT) == [("api", today, 1, 1), ("web", today, 1, 2)]
    # The raw results say the same.
    raw = store.db.execute("SELECT COUNT(*), SUM(ok = 0) FROM results WHERE check_name = 'web'").fetchone()
    assert tuple(raw) == (5, 2)


def test_a_failed_flush_writes_neither_results_nor_roll_ups(store: Store) -> None:
    with pytest.raises(sqlite3.Error):
        store.results.add([("web", MIDNIGHT, True, 0.1, "ok"), ("web", MIDNIGHT, True, 0.1, None)])  # type: ignore[list-item]
    assert store.db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
    assert store.results.per_minute("web", 0, MIDNIGHT + DAY) == [] and day_rows(store) == []


def test_retention_drops_raw_results_and_old_minutes_but_keeps_days(store: Store) -> None:
    now = MIDNIGHT + 20 * DAY
    old, recent = MIDNIGHT, now - 3600  # 20 days ago, an hour ago
    store.results.add([("web", old + i, i % 2 == 0, 0.1, "ok") for i in range(6)])
    store.results.add([("web", recent + i, True, 0.1, "ok") for i in range(4)] + [("db", recent, False, 1.0, "x")])
    counts = store.prune(now, results_per_check=3, delivered_events=DAY, resolved_evidence=DAY,
                         minute_rollups=14 * DAY, day_rollups=400 * DAY)
    assert counts["results"] == 7 and counts["result_minutes"] == 1 and counts["result_days"] == 0
    assert [r["started_at"] for r in store.results.recent("web", 100)] == [recent + 1, recent + 2, recent + 3]
    assert len(store.results.recent("db")) == 1
    assert store.results.per_minute("web", 0, now) == [
        {"minute": recent, "total": 4, "failing": 0, "latency_sum": pytest.approx(0.4), "latency_max": 0.1}]
    today, first = int(recent // DAY), int(MIDNIGHT // DAY)  # recent: 23:00 the day before now
    assert store.results.daily(MIDNIGHT) == [("db", today, 0, 1), ("web", first, 3, 6), ("web", today, 4, 4)]
    # Days go too, once older than day_rollups.
    counts = store.prune(now, results_per_check=3, delivered_events=DAY, resolved_evidence=DAY,
                         minute_rollups=14 * DAY, day_rollups=10 * DAY)
    assert counts["result_days"] == 1 and store.results.daily(0) == [("db", today, 0, 1), ("web", today, 4, 4)]


def test_a_version_6_database_migrates_its_results_into_roll_ups(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    db = sqlite3.connect(path)
    for number, _, script in migrations()[:6]:
        db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    db.executemany("INSERT INTO results (check_name, started_at, ok, latency, message) VALUES (?,?,?,?,?)", [
        ("web", MIDNIGHT - 10, 1, 0.5, "ok"), ("web", MIDNIGHT - 5, 0, 1.5, "HTTP 503"),
        ("web", MIDNIGHT + 1, 1, 0.25, "ok"), ("db", MIDNIGHT + 2, 0, 3.0, "refused"),
    ])
    db.execute("INSERT INTO silences (id, match, starts_at, ends_at, comment, created_by)"
               " VALUES ('sil_1', '{}', 1, 2, 'x', 'ann')")
    db.commit()
    db.close()

    store = Store(path)
    store.open()
    try:
        assert store.schema_version() == len(migrations()) >= 7
        assert [r["message"] for r in store.results.recent("web")] == ["ok", "HTTP 503", "ok"]
        assert store.db.execute("SELECT id FROM silences").fetchone()[0] == "sil_1"
        today = int(MIDNIGHT // DAY)
        assert day_rows(store) == [(today - 1, "web", 2, 1, 2.0, 1.5), (today, "db", 1, 1, 3.0, 3.0),
                                   (today, "web", 1, 0, 0.25, 0.25)]
        assert store.results.per_minute("web", MIDNIGHT - 60, MIDNIGHT + 60) == [
            {"minute": MIDNIGHT - 60, "total": 2, "failing": 1, "latency_sum": 2.0, "latency_max": 1.5},
            {"minute": MIDNIGHT, "total": 1, "failing": 0, "latency_sum": 0.25, "latency_max": 0.25}]
        store.results.add([("web", MIDNIGHT + 3, False, 1.0, "HTTP 500")])  # new results add to the migrated rows
        assert store.results.daily(MIDNIGHT) == [("db", today, 0, 1), ("web", today, 1, 2)]
    finally:
        store.close()


async def test_the_status_page_shows_90_days_from_roll_ups_after_raw_results_are_gone_and_a_restart(
    tmp_path: Path,
) -> None:
    now = MIDNIGHT + 12 * 3600  # noon
    today = int(now // DAY)
    store = Store(tmp_path / "lifeguard.db")
    await store.run(store.open)
    # 89 days ago: 3 of 4 passed; 30 days ago: all passed; today so far: 1 of 2; 91 days ago: outside.
    await store.run(store.results.add, [("web", now - 89 * DAY + i, i != 0, 0.1, "ok") for i in range(4)])
    await store.run(store.results.add, [("web", now - 30 * DAY + i, True, 0.1, "ok") for i in range(5)])
    await store.run(store.results.add, [("web", now - 91 * DAY, False, 0.1, "x"), ("web", now - 60, True, 0.1, "ok"),
                                        ("web", now - 1, False, 0.1, "x")])
    await store.run(lambda: store.prune(now, results_per_check=1, delivered_events=DAY, resolved_evidence=DAY))
    await store.aclose()

    again = Store(tmp_path / "lifeguard.db")  # a new process
    await again.run(again.open)
    try:
        assert len(await again.run(again.results.recent, "web", 100)) == 1  # the raw results are gone
        days = await again.run(again.results.daily, (today - DAYS + 1) * DAY)
        doc = build_status(title="T", now=now, checks=[CheckState("web", "Web", False)], days=days,
                           open_incidents=[], resolved=[])
    finally:
        await again.aclose()
    [web] = doc["services"]
    bars = web["days"]
    assert len(bars) == DAYS
    assert bars[0] == {"date": "2026-08-22", "uptime": 75.0, "level": "down"}  # 89 days ago, the first bar
    assert bars[DAYS - 1 - 30] == {"date": "2026-10-20", "uptime": 100.0, "level": "up"}
    assert bars[-1] == {"date": "2026-11-19", "uptime": 50.0, "level": "down"}
    assert sum(1 for b in bars if b["uptime"] is not None) == 3
    assert web["uptime"] == round(100 * (3 + 5 + 1) / (4 + 5 + 2), 2)
    assert web["checks"] == [{"name": "web", "status": "down", "uptime": web["uptime"]}]


def test_the_storage_bench_prints_its_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "results_storage.py"), "--rate", "20", "--minutes", "3",
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for figure in ("bytes per raw result", "bytes per minute roll-up", "flush cost", "after a week at"):
        assert figure in out, out
    assert "results written: 3600" in out, out
