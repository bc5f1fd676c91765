"""``lifeguard run`` under tracemalloc: where its memory is, after it has run a while.

    python bench/memsnap.py OUT run -c config.yaml      # then: touch OUT.go

Starts tracemalloc (25 frames), runs the agent's command line in this process, and once a file
``OUT.go`` appears (tracemalloc slows start-up a lot: whoever runs it says when the agent has run
long enough) writes to OUT the allocation sites still holding the most memory (by line, then by file), from a
thread, while the agent runs on. tracemalloc roughly doubles the agent's memory and slows it down:
the sites and their shares are what to read, not the totals. Each allocation is also charged to
the agent's own line nearest to it on the stack, which says which part of the agent holds it. bench/scale.py ``--tracemalloc``
runs it at the largest N.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
ROOT_DIRS = re.compile("^" + re.escape(ROOT) + "/(agent|checks|actions)/")


def dump(out: Path) -> None:
    go = out.with_name(out.name + ".go")
    while not go.exists():
        time.sleep(0.2)
    started = time.monotonic()
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    ])
    total = sum(s.size for s in snapshot.statistics("filename"))
    lines = [f"traced: {total / 2**20:.1f} MiB (the snapshot took {time.monotonic() - started:.1f} s)", "", "by line:"]
    lines += [f"  {s.size / 2**20:7.2f} MiB {100 * s.size / total:5.1f}% {s.count:8d} blocks  {s.traceback[0]}"
              for s in snapshot.statistics("lineno")[:30]]
    lines += ["", "by the agent's own line nearest the allocation (agent/, checks/, actions/):"]
    ours: dict[str, list[int]] = {}
    for trace in snapshot.traces:
        frame = next((f for f in reversed(trace.traceback) if ROOT_DIRS.search(f.filename)), None)
        key = f"{frame.filename[len(ROOT):].lstrip('/')}:{frame.lineno}" if frame else "(no agent frame)"
        entry = ours.setdefault(key, [0, 0])
        entry[0] += trace.size
        entry[1] += 1
    for key, (size, count) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:25]:
        lines.append(f"  {size / 2**20:7.2f} MiB {100 * size / total:5.1f}% {count:8d} blocks  {key}")
    lines += ["", "by file:"]
    lines += [f"  {s.size / 2**20:7.2f} MiB {100 * s.size / total:5.1f}%  {s.traceback[0].filename}"
              for s in snapshot.statistics("filename")[:15]]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    out = Path(sys.argv[1])
    tracemalloc.start(25)
    threading.Thread(target=dump, args=(out,), daemon=True).start()
    sys.argv = ["lifeguard", *sys.argv[2:]]
    from agent.cli import main as lifeguard

    sys.exit(lifeguard())


if __name__ == "__main__":
    main()
