"""The reference the agent is measured against: the bare aiohttp loop doing the same GETs.

    python bench/loop.py --url-prefix http://127.0.0.1:PORT/loop/ --n 1000 [--interval 1]

One ``ClientSession`` (keep-alive, no connection cap, as the agent's), N tasks, each GETting
``<prefix><i>`` on a monotonic schedule ``start + k * interval`` with a random start offset in
the first interval, reading the body, within a timeout of one interval; a run that overran its
slot skips the missed slots (the agent's rule). Nothing else: no results kept, no SQLite.

It measures its own lag (the moment a run starts minus the slot it was planned for): SIGUSR1
starts the measured window (what came before is warm-up), SIGUSR2 ends it, prints one JSON line
``{"runs", "failed", "skipped", "lag": {"p50", "p99", "max"}}`` on stdout and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time

import aiohttp
from common import percentile


class Window:
    def __init__(self) -> None:
        self.measuring = False
        self.lags: list[float] = []
        self.failed = 0
        self.skipped = 0


async def one_target(session: aiohttp.ClientSession, url: str, interval: float, window: Window) -> None:
    start = time.monotonic() + random.uniform(0, interval)
    slot = 0
    while True:
        planned = start + slot * interval
        await asyncio.sleep(max(0.0, planned - time.monotonic()))
        lag = time.monotonic() - planned
        try:
            async with asyncio.timeout(interval):
                async with session.get(url) as resp:
                    await resp.read()
                    ok = resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        following = max(slot + 1, int((time.monotonic() - start) // interval) + 1)
        if window.measuring:
            window.lags.append(lag)
            window.failed += not ok
            window.skipped += following - slot - 1
        slot = following


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url-prefix", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    window = Window()
    done = asyncio.Event()

    def begin() -> None:
        window.measuring = True

    loop.add_signal_handler(signal.SIGUSR1, begin)
    loop.add_signal_handler(signal.SIGUSR2, done.set)
    loop.add_signal_handler(signal.SIGTERM, done.set)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)) as session:
        tasks = [asyncio.create_task(one_target(session, f"{args.url_prefix}{i}", args.interval, window))
                 for i in range(args.n)]
        print("ready", flush=True)
        await done.wait()
        window.measuring = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lags = window.lags
    print(json.dumps({
        "runs": len(lags), "failed": window.failed, "skipped": window.skipped,
        "lag": {"p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99), "max": max(lags, default=None)},
    }), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
