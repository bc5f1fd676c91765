"""Time from a target going bad to the signed incident.opened arriving at a webhook receiver.

    .venv/bin/python bench/open_latency.py [--rounds 7] [--interval 1]

With open_after 0s the floor is "up to one interval" (when the next check runs); the issue's
budget is open_after + one interval + about one second. Prints the median, the worst, and the
median overhead beyond the check that saw the failure (detection → delivered).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures_agent import SECRET, AgentProcess, Receiver, Target, agent_config, wait_until  # noqa: E402


async def main(rounds: int, interval: float) -> None:
    target, receiver = Target(), Receiver()
    await target.start()
    await receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = agent_config(
            [{"name": "api", "type": "http", "url": target.url, "interval": f"{interval}s"}],
            [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": SECRET}],
        )
        cfg["agent"]["log_level"] = "info"
        agent = AgentProcess(Path(tmp), cfg)
        agent.start()
        try:
            await agent.ready()
            totals, overheads = [], []
            for n in range(rounds):
                target.status = 200
                await wait_until(lambda: len(receiver.of("incident.resolved")) == n, 30, "resolve")
                await asyncio.sleep(interval)
                hits_before = target.hits
                t0 = time.monotonic()
                target.status = 500
                await wait_until(lambda: target.hits > hits_before, 30, "the failing check", 0.002)
                t_seen = time.monotonic()
                await wait_until(lambda: len(receiver.of("incident.opened")) == n + 1, 30, "incident.opened", 0.002)
                t1 = time.monotonic()
                totals.append(t1 - t0)
                overheads.append(t1 - t_seen)
            print(f"rounds={rounds} interval={interval}s open_after=0s")
            print(f"flip -> incident.opened delivered: median {statistics.median(totals):.3f}s  worst {max(totals):.3f}s")
            print(f"failing check -> delivered (open + evidence + signed POST): median "
                  f"{statistics.median(overheads) * 1000:.0f}ms  worst {max(overheads) * 1000:.0f}ms")
        finally:
            agent.kill()
            await target.stop()
            await receiver.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()
    asyncio.run(main(a.rounds, a.interval))
