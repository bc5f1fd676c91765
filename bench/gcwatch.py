"""``lifeguard run`` with its garbage collections timed: how often each generation runs, and how long.

    python bench/gcwatch.py OUT run -c config.yaml      # then: touch OUT.go; later: touch OUT.stop

Installs a ``gc.callbacks`` hook (a few microseconds per collection) and runs the agent's command
line in this process. Collections are counted from when ``OUT.go`` appears until ``OUT.stop``
appears, then a summary goes to OUT: per generation the collections, their total and longest pause,
and the objects the collector tracks. A pause stops the event loop: every check due meanwhile
starts late by up to its length. bench/scale.py ``--gcwatch`` runs it at the largest N (with
``--agent-env BENCH_...``, under a change bench/tryout.py makes).
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
from pathlib import Path

import tryout

pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
measuring = False
_started = 0.0


def _timer(phase: str, info: dict[str, int]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
    elif measuring:
        pauses[info["generation"]].append(time.perf_counter() - _started)


def watch(out: Path) -> None:
    global measuring
    go, stop = out.with_name(out.name + ".go"), out.with_name(out.name + ".stop")
    while not go.exists():
        time.sleep(0.2)
    t0 = time.monotonic()
    measuring = True
    while not stop.exists():
        time.sleep(0.2)
    measuring = False
    seconds = time.monotonic() - t0
    summary = {
        "seconds": seconds,
        "tracked_objects": len(gc.get_objects()),
        "thresholds": gc.get_threshold(),
        "generations": {
            str(gen): {
                "collections": len(times),
                "per_minute": 60 * len(times) / seconds,
                "total_ms": 1000 * sum(times),
                "max_ms": 1000 * max(times, default=0.0),
                "mean_ms": 1000 * sum(times) / len(times) if times else 0.0,
            }
            for gen, times in pauses.items()
        },
    }
    out.write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    out = Path(sys.argv[1])
    gc.callbacks.append(_timer)
    tryout.apply()  # BENCH_* as bench/tryout.py reads them: a change's pauses
    threading.Thread(target=watch, args=(out,), daemon=True).start()
    sys.argv = ["lifeguard", *sys.argv[2:]]
    from agent.cli import main as lifeguard

    sys.exit(lifeguard())


if __name__ == "__main__":
    main()
