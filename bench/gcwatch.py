"""``lifeguard run`` with its garbage collections timed: how often each generation runs, and how long.

    python bench/gcwatch.py OUT run -c config.yaml      # then: touch OUT.go; later: touch OUT.stop

Installs a ``gc.callbacks`` hook (a few microseconds per collection) and runs the agent's command
line in this process. Collections are counted from when ``OUT.go`` appears until ``OUT.stop``
appears, then a summary goes to OUT: per generation the collections, their total and longest pause,
and the objects the collector tracks. A pause stops the event loop: every check due meanwhile
starts late by up to its length. It also times each event loop iteration (less its wait in
``select``): the stalls over 20/50/100/200 ms, and how much of them was garbage collection
(``longest_stalls_ms``: [busy, of which GC]); and at the end pymalloc's arenas against what
live objects use of them. bench/scale.py ``--gcwatch`` runs it at the largest N (with
``--agent-env BENCH_...``, under a change bench/tryout.py makes).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import tryout

pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
stalls: list[tuple[float, float]] = []  # (busy seconds of one event loop iteration, seconds of GC in it)
iterations = 0
measuring = False
_started = 0.0
_gc_seconds = 0.0  # running total, read around each loop iteration
_select_seconds = 0.0
STALL = 0.02


def _timer(phase: str, info: dict[str, int]) -> None:
    global _started, _gc_seconds
    if phase == "start":
        _started = time.perf_counter()
        return
    took = time.perf_counter() - _started
    _gc_seconds += took
    if measuring:
        pauses[info["generation"]].append(took)


def _time_loop_iterations() -> None:
    """Time each event loop iteration without its wait in ``select``: one that was busy longer
    than ``STALL`` held up every check due meanwhile; note how much of it was garbage collection."""
    import asyncio.base_events
    import selectors

    run_once = asyncio.base_events.BaseEventLoop._run_once
    select = selectors.EpollSelector.select

    def timed_select(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
        global _select_seconds
        t0 = time.perf_counter()
        try:
            return select(self, timeout)
        finally:
            _select_seconds += time.perf_counter() - t0

    def timed_run_once(self: asyncio.base_events.BaseEventLoop) -> None:
        global iterations
        t0, gc0, select0 = time.perf_counter(), _gc_seconds, _select_seconds
        run_once(self)
        busy = time.perf_counter() - t0 - (_select_seconds - select0)
        if measuring:
            iterations += 1
            if busy > STALL:
                stalls.append((busy, _gc_seconds - gc0))

    selectors.EpollSelector.select = timed_select  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop._run_once = timed_run_once  # type: ignore[method-assign]


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
        "loop_iterations": iterations,
        "stalls": {
            f"over_{ms}ms": {
                "count": sum(busy > ms / 1000 for busy, _ in stalls),
                "with_gc_over_half": sum(busy > ms / 1000 and g > busy / 2 for busy, g in stalls),
                "busy_s": sum(busy for busy, _ in stalls if busy > ms / 1000),
                "gc_s": sum(g for busy, g in stalls if busy > ms / 1000),
            }
            for ms in (20, 50, 100, 200)
        },
        "longest_stalls_ms": [[round(1000 * b, 1), round(1000 * g, 1)] for b, g in sorted(stalls, reverse=True)[:15]],
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
    summary["obmalloc"] = obmalloc_stats(out.with_name(out.name + ".obmalloc"))
    out.write_text(json.dumps(summary, indent=1) + "\n")


def obmalloc_stats(scratch: Path) -> dict[str, int]:
    """pymalloc's arenas from ``sys._debugmallocstats()`` (written to fd 2, caught in a file for the
    moment): ``arenas_bytes`` is what the arenas hold of RSS, ``allocated_bytes`` what live objects
    use of it, the rest free blocks and pools no object holds."""
    saved = os.dup(2)
    try:
        with open(scratch, "w") as f:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    text = scratch.read_text()
    scratch.unlink()
    figures = {}
    for key, line_start in (("arenas_bytes", "Total"), ("allocated_bytes", "# bytes in allocated blocks"),
                            ("available_bytes", "# bytes in available blocks")):
        line = next((x for x in text.splitlines() if x.startswith(line_start)), "= 0")
        figures[key] = int(line.rsplit("=", 1)[1].replace(",", "").strip() or 0)
    return figures


def main() -> None:
    out = Path(sys.argv[1])
    gc.callbacks.append(_timer)
    _time_loop_iterations()
    tryout.apply()  # BENCH_* as bench/tryout.py reads them: a change's pauses
    threading.Thread(target=watch, args=(out,), daemon=True).start()
    sys.argv = ["lifeguard", *sys.argv[2:]]
    from agent.cli import main as lifeguard

    sys.exit(lifeguard())


if __name__ == "__main__":
    main()
