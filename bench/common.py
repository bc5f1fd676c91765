"""What the bench scripts share: ports, a process's CPU and memory from /proc, the agent as a
subprocess, and the schedule lag histogram read from ``/metrics``.

The scripts run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they import
it as ``common``.
"""

from __future__ import annotations

import math
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` figure of /proc/PID/status: ``VmRSS`` (now) or ``VmHWM`` (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def anon_kb(pid: int) -> int:
    """Anonymous memory of the process (heap, arenas, thread stacks), from /proc/PID/smaps_rollup;
    RSS minus this is file-backed (the interpreter, shared libraries, mapped files)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Anonymous for pid {pid}")


def rss_kb(pid: int) -> int:
    return status_kb(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pin(pid: int, cpu: int | None) -> None:
    """Keep a process (and the threads it starts later) on one CPU; None leaves it free."""
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


def raise_open_files() -> int:
    """Lift this process's open-file limit (inherited by what it starts) to the hard limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start_agent(
    workdir: Path,
    config: dict[str, Any],
    log: Path | None = None,
    launcher: Sequence[str] = ("-m", "agent.cli"),
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``lifeguard run`` (as ``python -m agent.cli``, or ``python *launcher``) on ``workdir/config.yaml``,
    output to ``log``."""
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFEGUARD_")}
    env.update(extra_env or {}, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, *launcher, "run", "-c", str(path)],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stop_process(proc: subprocess.Popen[Any], grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s") from None
            time.sleep(0.05)


def lag_buckets(text: str) -> dict[str, float]:
    """``le`` -> cumulative count of ``lifeguard_check_schedule_lag_seconds`` in a /metrics answer."""
    from prometheus_client.parser import text_string_to_metric_families

    name = "lifeguard_check_schedule_lag_seconds"
    # Thousands of checks make a /metrics answer of megabytes: parse only the lines of this histogram.
    text = "\n".join(line for line in text.splitlines() if name in line) + "\n"
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    raise RuntimeError("no lag histogram")


def bucket_quantiles(
    before: dict[str, float], after: dict[str, float], less: tuple[dict[str, float], dict[str, float]] | None = None
) -> dict[str, float | None]:
    """p50, p99 and the max of the observations between two readings of a cumulative histogram,
    less those between the two readings of ``less`` if given (per bucket, never below zero).

    Quantiles are interpolated in their bucket (as Prometheus's ``histogram_quantile``); the max
    is the upper bound of the highest bucket that grew (the histogram knows no better). None
    where there were no observations; a quantile in the +Inf bucket is the highest finite bound.
    """
    rows, running = [], 0.0
    for le in sorted(after, key=lambda le: math.inf if le == "+Inf" else float(le)):
        count = after[le] - before.get(le, 0.0)
        if less is not None:
            count -= less[1].get(le, 0.0) - less[0].get(le, 0.0)
        running = max(running, count)  # cumulative counts never fall
        rows.append((math.inf if le == "+Inf" else float(le), running))
    bounds = rows
    total = bounds[-1][1]
    if total <= 0:
        return {"p50": None, "p99": None, "max": None, "count": 0}

    def quantile(q: float) -> float:
        rank, lower, below = q * total, 0.0, 0.0
        for bound, cum in bounds:
            if cum >= rank:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * ((rank - below) / (cum - below) if cum > below else 1.0)
            lower, below = bound, cum
        return lower

    highest, previous = 0.0, 0.0
    for bound, cum in bounds:
        if cum > previous:
            highest = bounds[-2][0] if math.isinf(bound) else bound
        previous = cum
    return {"p50": quantile(0.5), "p99": quantile(0.99), "max": highest, "count": int(total)}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
