"""What a `/metrics` scrape costs at N checks, in time and memory, and whether checks keep their
schedule meanwhile.

    .venv/bin/python bench/metrics_scrape.py [--checks 1000] [--scrapes 60] [--every 0.25] [--targets auto]

Runs `lifeguard run` with N HTTP checks at 1 s, each on its own URL of local targets (nginx when it
is installed, else an aiohttp server in this process; all on 127.0.0.1), lets it settle, then reads
the schedule lag histogram once without scraping load (a quiet window) and once while scraping
`/metrics` every `--every` seconds. Prints the time per scrape (median, p95, max), the size of the
answer, the share of check runs that started more than 10/50/100 ms late in each window (from
`lifeguard_check_schedule_lag_seconds`), and the agent's memory: RSS before the scrapes (one scrape
done, so `prometheus_client` is loaded), its peak while they ran (`VmHWM`, reset just before them
through `/proc/PID/clear_refs`) and RSS after them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from common import free_port, lag_buckets, raise_open_files, rss_kb, start_agent, status_kb
from targets import make_targets

TOKEN = "bench-token"


def late_share(before: dict[str, float], after: dict[str, float]) -> str:
    total = after["+Inf"] - before["+Inf"]
    parts = [f"runs {total:.0f}"]
    for le, label in (("0.01", ">10ms"), ("0.05", ">50ms"), ("0.1", ">100ms")):
        late = total - (after[le] - before[le])
        parts.append(f"{label} {100 * late / total:.2f}%")
    return ", ".join(parts)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=60)
    ap.add_argument("--every", type=float, default=0.25)
    ap.add_argument("--settle", type=float, default=15.0)
    ap.add_argument("--targets", choices=("auto", "nginx", "aiohttp"), default="auto")
    args = ap.parse_args()

    targets = make_targets(args.targets, None, raise_open_files())
    await targets.start()

    api_port = free_port()
    config = {
        "agent": {"name": "bench", "state_dir": "state", "log_level": "warning",
                  "api": {"listen": f"127.0.0.1:{api_port}", "token": TOKEN}},
        "checks": [{"name": f"web-{i}", "type": "http", "url": f"http://127.0.0.1:{targets.port}/t/{i}",
                    "interval": "1s", "timeout": "1s"} for i in range(args.checks)],
        "notifiers": [],
    }
    url = f"http://127.0.0.1:{api_port}/metrics"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_agent(Path(tmp), config)  # this checkout's agent (PYTHONPATH), not whichever is installed
        try:
            async with aiohttp.ClientSession() as session:
                async def get() -> tuple[float, str]:
                    t0 = time.perf_counter()
                    async with session.get(url, headers=headers) as r:
                        text = await r.text()
                        assert r.status == 200, r.status
                    return time.perf_counter() - t0, text

                deadline = time.monotonic() + 30
                while True:
                    try:
                        await get()
                        break
                    except (aiohttp.ClientError, AssertionError):
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise SystemExit("agent did not start") from None
                        await asyncio.sleep(0.2)
                await asyncio.sleep(args.settle)

                quiet_window = args.scrapes * args.every
                _, text = await get()
                q0 = lag_buckets(text)
                await asyncio.sleep(quiet_window)
                _, text = await get()
                q1 = lag_buckets(text)

                rss_before = rss_kb(proc.pid)
                try:  # the peak from here on: VmHWM starts again from the RSS of now
                    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
                    reset = True
                except OSError:
                    reset = False
                times, size = [], 0
                for _ in range(args.scrapes):
                    took, text = await get()
                    times.append(took)
                    size = len(text)
                    await asyncio.sleep(max(0.0, args.every - took))
                s1 = lag_buckets(text)
                peak, rss_after = status_kb(proc.pid, "VmHWM"), rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(20)
            await targets.stop()

    times.sort()
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"{args.checks} http checks at 1s, {args.scrapes} scrapes every {args.every}s, "
          f"{size / 1024:.0f} KiB per answer")
    print(f"  time per scrape: median {1000 * statistics.median(times):.1f} ms, p95 {1000 * p95:.1f} ms, "
          f"max {1000 * times[-1]:.1f} ms")
    print(f"  lag, quiet window ({quiet_window:.0f}s):    {late_share(q0, q1)}")
    print(f"  lag, while scraping ({quiet_window:.0f}s): {late_share(q1, s1)}")
    print(f"  RSS before the scrapes {rss_before / 1024:.1f} MB, peak while scraping "
          f"{peak / 1024:.1f} MB{'' if reset else ' (since start: VmHWM could not be reset)'}, "
          f"after {rss_after / 1024:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
