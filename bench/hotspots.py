"""Where the agent's CPU goes, from a py-spy profile in collapsed-stack form (``--format raw``).

    .venv/bin/python bench/hotspots.py bench/results/profile-3000.txt [--top 15]

Prints the functions with the largest share of samples: by self time (the sampled frame was that
function's own code) and inclusive (the function was anywhere on the stack), leaving out the
frames every stack shares (the interpreter's start, the event loop's run loop, a thread's start).
A frame is ``function (file)``; line numbers are dropped so a function counts once. Samples that
end waiting in the event loop's ``select`` are idle (py-spy cannot always tell a thread blocked in
``epoll_wait`` from a running one); shares are of the other, busy, samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

LINE = re.compile(r":\d+\)$")
# Frames on (nearly) every stack: they say nothing about where the time goes.
PLUMBING = re.compile(
    r"^(_run_module_as_main|_run_code|<module>|main|run|Runner\.run|BaseEventLoop\.(run_until_complete|"
    r"run_forever|_run_once)|Handle\._run|Thread\.(_bootstrap|_bootstrap_inner|run)|_worker|"
    r"Context\.run) \("
)
IDLE = re.compile(r"^(EpollSelector|PollSelector|SelectSelector)\.select \(|^_wait_for_tstate_lock|^Condition\.wait \(")


def stacks(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            out.append(([LINE.sub(")", f) for f in frames.split(";")], int(count)))
    return out


def hotspots(path: Path, top: int = 15) -> dict[str, Any]:
    """``{"samples", "idle", "self": [(frame, share)], "inclusive": [(frame, share)]}``, shares of busy samples."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = idle = 0
    for frames, count in stacks(path):
        if IDLE.match(frames[-1]):
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not PLUMBING.match(frame):
                under[frame] += count
    if not total:
        return {"samples": 0, "idle": idle, "self": [], "inclusive": []}
    return {
        "samples": total,
        "idle": idle,
        "self": [(f, c / total) for f, c in own.most_common(top)],
        "inclusive": [(f, c / total) for f, c in under.most_common(top)],
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['samples']} busy samples ({report['idle']} idle ones left out)"]
    for key, title in (("self", "self time"), ("inclusive", "inclusive (on the stack)")):
        lines.append(f"  {title}:")
        lines.extend(f"    {100 * share:5.1f}%  {frame}" for frame, share in report[key])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    print(render(hotspots(args.profile, args.top)))


if __name__ == "__main__":
    main()
