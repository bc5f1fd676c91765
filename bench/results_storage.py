"""What storing check results costs: bytes per result, the database after a week, and flush time.

    .venv/bin/python bench/results_storage.py [--rate 1000] [--checks N] [--minutes 70] [--dir DIR]

It simulates ``--rate`` results a second spread over ``--checks`` checks (default: one check per
result a second, i.e. every check at a 1 s interval) for ``--minutes`` of simulated time, on an
injected clock, into a real SQLite store through the real repositories: one flush a simulated second
(``store.results.add``, results and roll-ups in one transaction, as the daemon does every second)
and retention as the daemon does it: raw results beyond ``results_per_check`` trimmed every simulated
minute, 100 checks a store call (``store.trim_results``), and ``store.prune`` with the config's
default ``agent.retention`` at the start and every simulated hour (``--prune-every`` to try another
period). It prints:

- bytes per raw result, per minute roll-up and per day roll-up (SQLite's ``dbstat``: tables and
  indexes, pages as allocated);
- the database after a simulated week at ``--rate``, EXTRAPOLATED from those figures (a week at
  1,000 results/s is 605 M results; simulating it would take hours): raw results at their peak
  (``results_per_check`` per check plus a minute of results, just before a trim: SQLite
  reuses freed pages but does not shrink the file), one minute roll-up per check and minute for
  ``min(7 d, minute_rollups)``, one day roll-up per check and day;
- flush cost: the median (and the worst) milliseconds per 1,000 results written;
- trim cost: the median and worst milliseconds of one trim call (what an incident write may wait);
- prune cost: the median and worst milliseconds of the hourly prunes.

Figures only, no pass/fail: it measures this machine, at this moment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config.sections import RetentionConfig  # noqa: E402
from agent.store import Store  # noqa: E402
from agent.store.results import ResultRow  # noqa: E402

T0 = 1_795_046_400.0  # 2026-11-19T00:00:00Z, the simulated start
WEEK = 7 * 86400.0
HOUR = 3600.0


def batch(second: int, rate: int, checks: int, start: int) -> list[ResultRow]:
    """The results of one simulated second: ``rate`` of them, checks taken in turn from ``start``."""
    rows: list[ResultRow] = []
    for j in range(rate):
        k = start + j
        ok = k % 50 != 0  # one in 50 fails
        rows.append((
            f"check-{k % checks:05d}", T0 + second + j / rate, ok, 0.004 + (k % 97) / 1000,
            "HTTP 200" if ok else "HTTP 503 Service Unavailable",
        ))
    return rows


def table_bytes(store: Store) -> dict[str, int]:
    """Bytes of each table with its indexes (dbstat), or {} without dbstat."""
    try:
        rows = store.db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except Exception:
        return {}
    sizes = {str(r[0]): int(r[1]) for r in rows}
    return {
        "results": sizes.get("results", 0) + sizes.get("results_by_check", 0),
        "results_minute": sizes.get("results_minute", 0),
        "results_day": sizes.get("results_day", 0),
    }


def count(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


TRIM_EVERY = 60  # as the daemon: raw results beyond retention trimmed every minute...
TRIM_CHUNK = 100  # ...a chunk of checks per store call


def run(rate: int, checks: int, minutes: int, folder: Path, prune_every: int) -> None:
    retention = RetentionConfig()
    store = Store(folder / "lifeguard.db")
    store.open()

    def prune(now: float) -> float:
        began = time.perf_counter()
        store.prune(
            now,
            results_per_check=retention.results_per_check,
            delivered_events=retention.delivered_events,
            resolved_evidence=retention.resolved_evidence,
            minute_rollups=retention.minute_rollups,
            day_rollups=retention.day_rollups,
        )
        return (time.perf_counter() - began) * 1000

    names = [f"check-{i:05d}" for i in range(checks)]

    def trim() -> list[float]:
        spent = []
        for i in range(0, len(names), TRIM_CHUNK):
            began = time.perf_counter()
            store.trim_results(names[i : i + TRIM_CHUNK], retention.results_per_check)
            spent.append((time.perf_counter() - began) * 1000)
        return spent

    flush_ms: list[float] = []
    prune_ms: list[float] = []
    trim_ms: list[float] = []
    written = 0
    peak: dict[str, int] = {}
    peak_rows = 0
    prune(T0)
    for second in range(minutes * 60):
        if second and second % prune_every == 0:
            rows_now = count(store, "results")
            if rows_now > peak_rows:
                peak_rows, peak = rows_now, table_bytes(store)
            prune_ms.append(prune(T0 + second))
        if second and second % TRIM_EVERY == 0:
            rows_now = count(store, "results")
            if rows_now > peak_rows:
                peak_rows, peak = rows_now, table_bytes(store)
            trim_ms.extend(trim())
        rows = batch(second, rate, checks, written)
        began = time.perf_counter()
        store.results.add(rows)
        flush_ms.append((time.perf_counter() - began) * 1000 * 1000 / len(rows))
        written += len(rows)
    end = T0 + minutes * 60
    raw_rows, minute_rows, day_rows = count(store, "results"), count(store, "results_minute"), count(store, "results_day")
    sizes = table_bytes(store)
    prune_ms.append(prune(end))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    file_bytes = store.path.stat().st_size
    store.close()

    per_check_rate = rate / checks
    print(f"simulated: {rate} results/s over {checks} checks ({per_check_rate:g}/s each) for {minutes} min,"
          f" flush every 1 s, prune at start and every {prune_every} s; retention: results_per_check={retention.results_per_check},"
          f" minute_rollups={retention.minute_rollups / 86400:g}d, day_rollups={retention.day_rollups / 86400:g}d")
    print(f"results written: {written}")
    print(f"database file after the run (checkpointed): {file_bytes / 1e6:.1f} MB")
    if not sizes:
        print("per-table sizes: unavailable (this SQLite has no dbstat); no extrapolation")
    else:
        raw_each = sizes["results"] / max(raw_rows, 1)
        minute_each = sizes["results_minute"] / max(minute_rows, 1)
        day_each = sizes["results_day"] / max(day_rows, 1)
        print(f"bytes per raw result: {raw_each:.0f} (results table + index, {raw_rows} rows)")
        print(f"bytes per minute roll-up: {minute_each:.0f} ({minute_rows} rows)")
        print(f"bytes per day roll-up: {day_each:.0f} ({day_rows} rows)")
        raw_peak = checks * min(retention.results_per_check + per_check_rate * TRIM_EVERY, per_check_rate * WEEK)
        minutes_kept = min(WEEK, retention.minute_rollups) / 60
        minute_rows_week = checks * minutes_kept * min(1.0, per_check_rate * 60)
        day_rows_week = checks * 7
        week = raw_peak * raw_each + minute_rows_week * minute_each + day_rows_week * day_each
        print(f"after a week at {rate} results/s (EXTRAPOLATED, not simulated): {week / 1e6:.0f} MB ="
              f" raw at peak {raw_peak * raw_each / 1e6:.0f} MB ({raw_peak:.0f} rows)"
              f" + minute roll-ups {minute_rows_week * minute_each / 1e6:.0f} MB ({minute_rows_week:.0f} rows)"
              f" + day roll-ups {day_rows_week * day_each / 1e6:.2f} MB;"
              f" {week / (rate * WEEK):.2f} bytes per result written that week")
        if peak:
            print(f"measured, the most raw results just before a prune: raw results {peak['results'] / 1e6:.1f} MB ({peak_rows} rows)")
    print(f"flush cost: median {statistics.median(flush_ms):.2f} ms per 1,000 results"
          f" (worst {max(flush_ms):.2f}; {rate} results a flush)")
    if trim_ms:
        print(f"trim cost (every {TRIM_EVERY} s, {TRIM_CHUNK} checks a store call): median {statistics.median(trim_ms):.1f} ms,"
              f" worst {max(trim_ms):.1f} ms per call ({len(trim_ms)} calls)")
    print(f"prune cost: median {statistics.median(prune_ms):.0f} ms, worst {max(prune_ms):.0f} ms"
          f" ({len(prune_ms)} prunes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="results a second (default 1000)")
    parser.add_argument("--checks", type=int, default=0, help="distinct checks (default: --rate)")
    parser.add_argument("--minutes", type=int, default=70, help="simulated minutes (default 70)")
    parser.add_argument("--prune-every", type=int, default=int(HOUR),
                        help="simulated seconds between prunes (default 3600, as the agent)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database (default: a temp dir)")
    args = parser.parse_args()
    if args.rate < 1 or args.minutes < 1 or args.checks < 0 or args.prune_every < 1:
        parser.error("--rate, --minutes and --prune-every must be at least 1, --checks not negative")
    checks = args.checks or args.rate
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args.rate, checks, args.minutes, args.dir, args.prune_every)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args.rate, checks, args.minutes, Path(tmp), args.prune_every)


if __name__ == "__main__":
    main()
