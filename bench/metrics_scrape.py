"""What a `/metrics` scrape costs at 1,000 checks, and whether checks keep their schedule meanwhile.

    .venv/bin/python bench/metrics_scrape.py [--checks 1000] [--scrapes 60] [--every 0.25]

Runs `lifeguard run` with N HTTP checks at 1 s against a local target (all on 127.0.0.1), lets it
settle, then reads the schedule lag histogram once without scraping load (a quiet window) and once
while scraping `/metrics` every `--every` seconds. Prints the time per scrape (median, p95, max),
the size of the answer, and the share of check runs that started more than 10/50/100 ms late in
each window (from `lifeguard_check_schedule_lag_seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from common import free_port, lag_buckets

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
    args = ap.parse_args()

    app = web.Application()
    app.router.add_get("/health", lambda _: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    target_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", target_port).start()

    api_port = free_port()
    config = {
        "agent": {"name": "bench", "state_dir": "state", "log_level": "warning",
                  "api": {"listen": f"127.0.0.1:{api_port}", "token": TOKEN}},
        "checks": [{"name": f"web-{i}", "type": "http", "url": f"http://127.0.0.1:{target_port}/health",
                    "interval": "1s", "timeout": "1s"} for i in range(args.checks)],
        "notifiers": [],
    }
    url = f"http://127.0.0.1:{api_port}/metrics"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
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

                times, size = [], 0
                for _ in range(args.scrapes):
                    took, text = await get()
                    times.append(took)
                    size = len(text)
                    await asyncio.sleep(max(0.0, args.every - took))
                s1 = lag_buckets(text)
        finally:
            proc.terminate()
            proc.wait(20)
            await runner.cleanup()

    times.sort()
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"{args.checks} http checks at 1s, {args.scrapes} scrapes every {args.every}s, "
          f"{size / 1024:.0f} KiB per answer")
    print(f"  time per scrape: median {1000 * statistics.median(times):.1f} ms, p95 {1000 * p95:.1f} ms, "
          f"max {1000 * times[-1]:.1f} ms")
    print(f"  lag, quiet window ({quiet_window:.0f}s):    {late_share(q0, q1)}")
    print(f"  lag, while scraping ({quiet_window:.0f}s): {late_share(q1, s1)}")


if __name__ == "__main__":
    asyncio.run(main())
