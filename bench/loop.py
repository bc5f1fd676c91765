"""The reference the agent is measured against: the bare aiohttp loop doing the same GETs.

    python bench/loop.py --url-prefix http://127.0.0.1:PORT/loop/ --n 1000 [--interval 1]

One ``ClientSession`` (keep-alive, no connection cap, as the agent's), N tasks, each GETting
``<prefix><i>`` on a monotonic schedule ``start + k * interval`` with a random start offset in
the first interval, reading the body, within a timeout of one interval; a run that overran its
slot skips the missed slots (the agent's rule). Nothing else: no results kept, no SQLite.

``--client raw`` swaps aiohttp for a bare HTTP/1.1 keep-alive GET over an ``asyncio.Protocol``
(a connection per target, a Content-Length body, nothing else): not a client anyone should ship,
but the floor a lean http check could approach, for comparison.

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
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
from common import percentile


class Window:
    def __init__(self) -> None:
        self.measuring = False
        self.lags: list[float] = []
        self.failed = 0
        self.skipped = 0


class RawGet(asyncio.Protocol):
    """One keep-alive connection answering one GET at a time (status line, Content-Length body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at, length = head.find(b"content-length:"), 0
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        if len(self.buffer) >= end + 4 + length:
            del self.buffer[:end + 4 + length]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


def aiohttp_get(session: aiohttp.ClientSession, url: str) -> Callable[[], Awaitable[bool]]:
    async def get() -> bool:
        async with session.get(url) as resp:
            await resp.read()
            return resp.status < 300
    return get


def raw_get(url: str) -> Callable[[], Awaitable[bool]]:
    parts = urlsplit(url)
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    conn: RawGet | None = None

    async def get() -> bool:
        nonlocal conn
        loop = asyncio.get_running_loop()
        if conn is None or conn.transport is None or conn.transport.is_closing():
            _, conn = await loop.create_connection(RawGet, parts.hostname, parts.port)
        conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            return await conn.waiter < 300
        except BaseException:
            conn.transport.close()  # a timed-out answer must not be read as the next one's
            conn = None
            raise
    return get


async def one_target(get: Callable[[], Awaitable[bool]], interval: float, window: Window) -> None:
    start = time.monotonic() + random.uniform(0, interval)
    slot = 0
    while True:
        planned = start + slot * interval
        await asyncio.sleep(max(0.0, planned - time.monotonic()))
        lag = time.monotonic() - planned
        try:
            async with asyncio.timeout(interval):
                ok = await get()
        except (aiohttp.ClientError, OSError, TimeoutError):
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
    ap.add_argument("--client", choices=("aiohttp", "raw"), default="aiohttp")
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
        urls = [f"{args.url_prefix}{i}" for i in range(args.n)]
        gets = [aiohttp_get(session, u) if args.client == "aiohttp" else raw_get(u) for u in urls]
        tasks = [asyncio.create_task(one_target(get, args.interval, window)) for get in gets]
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
