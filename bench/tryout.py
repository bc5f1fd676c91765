"""``lifeguard run`` with a change tried from outside, to measure it before the agent has it.

    BENCH_GC_THRESHOLD=10000,20,100 python bench/tryout.py run -c config.yaml
    bench/scale.py --agent-launcher tryout --agent-env BENCH_GC_FREEZE_AFTER=5 ...

Each switch is an environment variable, read at start:
- ``BENCH_GC_THRESHOLD`` (``gen0,gen1,gen2``): ``gc.set_threshold`` before the agent starts.
- ``BENCH_GC_FREEZE_AFTER`` (seconds): then one full collection and ``gc.freeze()``, which moves
  every object then alive (modules, the config, the checks) out of the collector's reach, so later
  full collections scan only what came after.
- ``BENCH_GC_AFTER_START`` (``gen0,gen1,gen2``): ``gc.set_threshold`` right after the agent's own
  start-up tuning (which freezes what start-up allocated and sets 10,000/50/100), to weigh other
  thresholds against it (``700,10,10`` is Python's default).
- ``BENCH_SWITCH_INTERVAL`` (seconds): ``sys.setswitchinterval``, how long a thread holding the
  GIL (the results flush, a scrape) may keep the event loop waiting before it must hand it over.
- ``BENCH_FLUSH_EVERY`` (seconds): how often results are written (the agent: every second).
- ``BENCH_NO_RESULTS=1``: results are not written at all (a diagnosis, never a fix: it shows what
  the writing costs).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time


def freeze_after(seconds: float) -> None:
    time.sleep(seconds)
    gc.collect()
    gc.freeze()


def apply() -> None:
    """The changes the environment asks for (bench/gcwatch.py applies them too)."""
    env = os.environ.get
    if threshold := env("BENCH_GC_THRESHOLD"):
        gc.set_threshold(*(int(x) for x in threshold.split(",")))
    if after := env("BENCH_GC_FREEZE_AFTER"):
        threading.Thread(target=freeze_after, args=(float(after),), daemon=True).start()
    if after_start := env("BENCH_GC_AFTER_START"):
        import agent.daemon

        tuned = agent.daemon._release_startup_memory
        thresholds = tuple(int(x) for x in after_start.split(","))

        def retuned() -> None:
            tuned()
            gc.set_threshold(*thresholds)

        agent.daemon._release_startup_memory = retuned
    if interval := env("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(interval))
    if every := env("BENCH_FLUSH_EVERY"):
        import agent.daemon

        agent.daemon.FLUSH_EVERY = float(every)
    if env("BENCH_NO_RESULTS") == "1":
        from agent.store.results import ResultsRepo

        ResultsRepo.add = lambda self, rows: None  # type: ignore[method-assign]


def main() -> None:
    apply()
    sys.argv = ["lifeguard", *sys.argv[1:]]
    from agent.cli import main as lifeguard

    sys.exit(lifeguard())


if __name__ == "__main__":
    main()
