"""From ``lifeguard run`` to its first check: how soon a started agent is watching.

    .venv/bin/python bench/first_check.py [--rounds 7] [--checks 50]

Starts the agent as a real process (the shipped config's agent section, ``--checks`` http checks
at 10 s, each on its own URL of a target server here) and times, from the moment the process is
spawned, the first request any check makes and the moment every check has made one. Prints the
medians and the worst over ``--rounds``. The issue's target: the first check under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from aiohttp import web
from common import ROOT, free_port


async def one_round(checks: int) -> tuple[float, float]:
    hits: dict[str, float] = {}
    every = asyncio.Event()

    async def target(request: web.Request) -> web.Response:
        hits.setdefault(request.match_info["i"], time.monotonic())
        if len(hits) == checks:
            every.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/t/{i}", target)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "agent": {"state_dir": f"{tmp}/state", "api": {"listen": f"127.0.0.1:{free_port()}"}},
            "checks": [
                {"name": f"web-{i}", "type": "http", "url": f"http://127.0.0.1:{port}/t/{i}", "interval": "10s"}
                for i in range(checks)
            ],
            "notifiers": [{"name": "events", "type": "file"}],
        }
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "-c", str(path),
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(every.wait(), 30)
        finally:
            proc.terminate()
            await proc.wait()
            await runner.cleanup()
    return min(hits.values()) - started, max(hits.values()) - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--checks", type=int, default=50)
    args = ap.parse_args()
    firsts, alls = [], []
    for _ in range(args.rounds):
        first, every = asyncio.run(one_round(args.checks))
        firsts.append(first)
        alls.append(every)
    print(f"lifeguard run -> first check: median {statistics.median(firsts):.3f} s, worst {max(firsts):.3f} s; "
          f"-> all {args.checks} checked once: median {statistics.median(alls):.3f} s, worst {max(alls):.3f} s "
          f"({args.rounds} rounds)")


if __name__ == "__main__":
    main()
