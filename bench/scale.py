"""Is the agent lightweight? CPU, memory, schedule and alert times at N HTTP targets, against the bare loop.

    .venv/bin/python bench/scale.py                      # N = 100, 300, 1000, 3000; 3 repeats
    .venv/bin/python bench/scale.py --n 1000 --repeats 1 --window 30
    .venv/bin/python bench/scale.py --smoke              # N = 20, a few seconds (the test suite runs it)

For each N and repeat, on loopback only:
1. The agent: ``lifeguard run`` as a real process with N ``http`` checks (interval 1 s, timeout 1 s,
   ``open_after: 0s``), each on its own URL ``/t/<i>`` of the targets (nginx, else an aiohttp farm;
   see targets.py), a webhook notifier to a receiver here, the API with a token. After a warm-up, a
   measured window: CPU (utime + stime from /proc/PID/stat) per 1,000 checks, RSS (VmRSS sampled
   every second: the median is "steady"; VmHWM at the end is "peak"; anonymous memory from
   smaps_rollup), the schedule lag histogram from ``/metrics`` (read before and after the window,
   outside the CPU reading), the database's growth, and from the targets' side when each target was
   hit. Then ``--fail`` targets fail on cue: detection = incident.opened received here minus the
   moment they failed; delivery = received minus the incident's ``opened_at``.
2. The reference: bench/loop.py (one ClientSession, N tasks, a GET each per second on a monotonic
   schedule) against ``/loop/<i>``, measured the same way over a window of the same length; with
   ``--raw`` a second time with its bare asyncio HTTP/1.1 client (the floor, for comparison).
3. After all N: the slow scenario, per repeat and per ``--slow-caps`` value of
   ``max_concurrent_checks``: ``--slow-n`` targets of which ``--slow`` hang until the check's
   timeout; the others' lag is read from the targets' side.
4. Optional: ``--docker ROUNDS`` heal time against a dockerd of its own (heal.py); ``--profile S``
   py-spy on the agent at the largest N after its first window (hotspots.py); ``--tracemalloc S``
   one more agent run at the largest N under tracemalloc (memsnap.py).

The agent and the loop run one after the other, each pinned to ``--agent-cpu`` (the same core, so
they are compared on equal terms; run side by side, the loop at N = 3,000 needs most of a core by
itself); the targets, the receiver and this script are pinned to ``--targets-cpu``.

From the targets' side, per target: its rate ((hits - 1) / (last - first)); its cycle (the time
between two hits); skipped runs (a cycle of k intervals skipped k - 1); its lag, estimated as each
hit's time minus its slot, the slot being the target's most punctual hit in the window plus whole
intervals (so lag is measured against that hit, which is ~0 when all is well).

Writes a table (stdout), ``scale.json`` and, when matplotlib is importable and more than one N was
run, ``scale.png`` (CPU and lag against N) into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import (
    ROOT,
    anon_kb,
    bucket_quantiles,
    cpu_seconds,
    free_port,
    lag_buckets,
    percentile,
    pin,
    raise_open_files,
    rss_kb,
    start_agent,
    status_kb,
    stop_process,
)
from hotspots import hotspots, render
from targets import Hits, Targets, make_targets, url

TOKEN = "bench-token"
INTERVAL = 1.0
HERE = Path(__file__).resolve().parent


class Receiver:
    """The webhook receiver: every event with the epoch time it arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.events.append((time.time(), json.loads(body)))
        return web.Response(text="{}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def side_stats(hits: Hits, ids: Iterable[int], t0: float, t1: float) -> dict[str, Any]:
    """What the targets saw of one client over [t0, t1]: rates, cycles, skipped runs, lag (see the docstring)."""
    ids = list(ids)
    rates, cycles, lags, skipped, checked, total = [], [], [], 0, 0, 0
    for i in ids:
        times = hits.get(i, [])
        total += len(times)
        if times:
            checked += 1
        if len(times) < 2:
            rates.append(len(times) / (t1 - t0))
            continue
        rates.append((len(times) - 1) / (times[-1] - times[0]))
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        cycles.extend(gaps)
        skipped += sum(max(0, round(g / INTERVAL) - 1) for g in gaps)
        offsets = [t - round((t - times[0]) / INTERVAL) * INTERVAL for t in times]
        base = min(offsets)
        lags.extend(o - base for o in offsets)
    return {
        "targets": len(ids),
        "checked": checked,
        "hits": total,
        "rate_min": min(rates, default=0.0),
        "rate_median": statistics.median(rates) if rates else 0.0,
        "below_0_99": sum(r < 0.99 for r in rates),
        "cycle_p50": percentile(cycles, 0.5),
        "cycle_p99": percentile(cycles, 0.99),
        "cycle_max": max(cycles, default=None),
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "lag_max": max(lags, default=None),
        "skipped": skipped,
    }


def db_used_bytes(path: Path) -> int:
    """Bytes of the database in use (pages minus free pages), as committed, WAL included."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    finally:
        conn.close()


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def sample_rss(pid: int, until: float, samples: list[int]) -> None:
    while time.time() < until:
        samples.append(rss_kb(pid))
        await asyncio.sleep(min(1.0, max(0.0, until - time.time())))


def per_1000(cpu: float, checks: int) -> float | None:
    return 1000 * cpu / checks if checks else None


class Bench:
    def __init__(self, opts: argparse.Namespace, targets: Targets, receiver: Receiver) -> None:
        self.o = opts
        self.targets = targets
        self.receiver = receiver
        self.session: aiohttp.ClientSession | None = None
        self.hotspots: dict[str, Any] | None = None

    async def get(self, port: int, path: str) -> tuple[int, str]:
        assert self.session is not None
        async with self.session.get(f"http://127.0.0.1:{port}{path}",
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            return r.status, await r.text()

    async def wait_ready(self, proc: subprocess.Popen[bytes], port: int, bound: float, log: Path) -> None:
        deadline = time.monotonic() + bound
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the agent exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if (await self.get(port, "/health"))[0] == 200:
                    return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the agent did not answer /health within {bound:.0f}s")
            await asyncio.sleep(0.1)

    def config(self, n: int, state: Path, api_port: int, cap: int | None) -> dict[str, Any]:
        agent: dict[str, Any] = {"name": "bench", "state_dir": str(state), "log_level": "warning",
                                 "api": {"listen": f"127.0.0.1:{api_port}", "token": TOKEN}}
        if cap:
            agent["max_concurrent_checks"] = cap
        return {
            "agent": agent,
            "defaults": {"interval": "1s", "timeout": "1s", "open_after": "0s"},
            "checks": [{"name": f"t-{i}", "type": "http", "url": url(self.targets, "t", i)} for i in range(n)],
            "notifiers": [{"name": "bench", "type": "webhook", "url": f"http://127.0.0.1:{self.receiver.port}/hook"}],
        }

    async def agent_run(self, n: int, slow: int = 0, fail: int = 0, cap: int | None = None) -> dict[str, Any]:
        """One agent process over warm-up and window (and detection when ``fail``): its figures."""
        o = self.o
        slow_ids = list(range(n - slow, n))
        with tempfile.TemporaryDirectory(prefix="lifeguard-bench-agent-") as tmp:
            work = Path(tmp)
            api_port = free_port()
            log = work / "agent.log"
            db = work / "state" / "lifeguard.db"
            self.targets.cue("slow", slow_ids, True)
            launcher = (str(HERE / f"{o.agent_launcher}.py"),) if o.agent_launcher else ("-m", "agent.cli")
            proc = start_agent(work, self.config(n, work / "state", api_port, cap), log, launcher, o.agent_env)
            pin(proc.pid, o.agent_cpu)
            try:
                t_start = time.monotonic()
                await self.wait_ready(proc, api_port, 60 + n / 20, log)
                ready_s = time.monotonic() - t_start
                await asyncio.sleep(o.warmup)
                # A scrape at 3,000 checks formats megabytes in a thread that holds the GIL for a while:
                # the runs it delays count after the reading it returns. So the window is read between
                # scrapes B and C, less what B disturbed: the count from A to B, the same settle apart.
                ma = lag_buckets((await self.get(api_port, "/metrics"))[1])
                await asyncio.sleep(o.settle)
                m0 = lag_buckets((await self.get(api_port, "/metrics"))[1])
                mb = m0
                await asyncio.sleep(o.settle)
                db0, file0 = db_used_bytes(db), file_bytes(db)
                cpu0, t0 = cpu_seconds(proc.pid), time.time()
                rss: list[int] = []
                await sample_rss(proc.pid, t0 + o.window, rss)
                cpu1, t1 = cpu_seconds(proc.pid), time.time()
                hwm, anon = status_kb(proc.pid, "VmHWM"), anon_kb(proc.pid)
                m1 = lag_buckets((await self.get(api_port, "/metrics"))[1])
                db1, file1 = db_used_bytes(db), file_bytes(db)
                alerts = await self.detect(list(range(fail))) if fail else None
                if o.profile and n == max(o.n) and not slow and self.hotspots is None:
                    await self.profile(proc.pid)
            finally:
                t_stop = time.monotonic()
                await asyncio.to_thread(stop_process, proc)
                stop_s = time.monotonic() - t_stop
                self.targets.cue("slow", slow_ids, False)
        hits = await self.targets.hits("t", t0, t1)
        side = side_stats(hits, range(n - slow), t0, t1)
        checks = sum(len(v) for v in hits.values())
        out = {
            "n": n, "ready_s": ready_s, "stop_s": stop_s, "window_s": t1 - t0, "checks": checks,
            "cpu_s": cpu1 - cpu0, "cpu_per_1000": per_1000(cpu1 - cpu0, checks),
            "rss_peak_mb": hwm / 1024, "rss_steady_mb": statistics.median(rss) / 1024, "rss_anon_mb": anon / 1024,
            "metrics_lag": bucket_quantiles(m0, m1, (ma, mb)),
            "side": side,
            "db_bytes_per_result": (db1 - db0) / checks if checks else None,
            "db_file_growth": file1 - file0,
        }
        if slow:
            out["slow"] = slow
            out["slow_side"] = side_stats(hits, slow_ids, t0, t1)
        if alerts is not None:
            out["alerts"] = alerts
        return out

    async def detect(self, ids: list[int]) -> dict[str, Any]:
        """Fail ``ids`` on cue; time to each one's incident.opened here, and its delivery time."""
        names = {f"t-{i}": i for i in ids}
        seen: dict[str, tuple[float, dict[str, Any]]] = {}
        start = len(self.receiver.events)
        t_fail = time.time()
        self.targets.cue("fail", ids, True)
        deadline = time.monotonic() + 20
        try:
            while len(seen) < len(ids) and time.monotonic() < deadline:
                for at, payload in self.receiver.events[start:]:
                    check = payload.get("incident", {}).get("check")
                    if payload.get("event") == "incident.opened" and check in names:
                        seen.setdefault(check, (at, payload))
                await asyncio.sleep(0.01)
        finally:
            self.targets.cue("fail", ids, False)
        detect = [at - t_fail for at, _ in seen.values()]
        deliver = [at - epoch(p["incident"]["opened_at"]) for at, p in seen.values()]
        return {
            "failed": len(ids), "opened": len(seen),
            "detect_median": statistics.median(detect) if detect else None, "detect_max": max(detect, default=None),
            "deliver_median": statistics.median(deliver) if deliver else None, "deliver_max": max(deliver, default=None),
        }

    async def profile(self, pid: int) -> None:
        """py-spy on the agent for ``--profile`` seconds at the largest N (an SVG and the top functions)."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            print(f"no profile: {spy} is missing (.venv/bin/pip install py-spy)", file=sys.stderr)
            return
        out = Path(self.o.out)
        out.mkdir(parents=True, exist_ok=True)
        svg, raw = out / f"profile-{max(self.o.n)}.svg", out / f"profile-{max(self.o.n)}.txt"

        async def record(fmt: str, path: Path) -> str | None:
            proc = await asyncio.create_subprocess_exec(
                str(spy), "record", "--pid", str(pid), "--duration", str(self.o.profile), "--rate", "100",
                "--format", fmt, "--output", str(path), "--nonblocking",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            said, _ = await proc.communicate()
            return f"py-spy failed ({proc.returncode}): {said.decode(errors='replace')[-800:]}" if proc.returncode else None

        # Both at once: the same seconds of the agent's life, in both forms.
        for failure in await asyncio.gather(record("flamegraph", svg), record("raw", raw)):
            if failure:
                print(failure, file=sys.stderr)
                return
        self.hotspots = hotspots(raw)
        self.hotspots["files"] = [str(svg), str(raw)]
        print(f"profile of the agent at N = {max(self.o.n)} ({svg}, {raw}):\n{render(self.hotspots)}", file=sys.stderr)

    async def loop_run(self, n: int, client: str = "aiohttp") -> dict[str, Any]:
        """The reference loop over warm-up and a window of the same length, pinned like the agent."""
        o = self.o
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "loop.py"), "--url-prefix", url(self.targets, "loop", 0)[:-1], "--n", str(n),
            "--client", client, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        pin(proc.pid, o.agent_cpu)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise SystemExit(f"bench/loop.py did not start: {line!r}")
            await asyncio.sleep(o.warmup)
            cpu0, t0 = cpu_seconds(proc.pid), time.time()
            proc.send_signal(signal.SIGUSR1)
            rss: list[int] = []
            await sample_rss(proc.pid, t0 + o.window, rss)
            cpu1, t1 = cpu_seconds(proc.pid), time.time()
            hwm = status_kb(proc.pid, "VmHWM")
            proc.send_signal(signal.SIGUSR2)
            own = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        hits = await self.targets.hits("loop", t0, t1)
        checks = sum(len(v) for v in hits.values())
        return {
            "n": n, "window_s": t1 - t0, "checks": checks,
            "cpu_s": cpu1 - cpu0, "cpu_per_1000": per_1000(cpu1 - cpu0, checks),
            "rss_peak_mb": hwm / 1024, "rss_steady_mb": statistics.median(rss) / 1024,
            "own": own, "side": side_stats(hits, range(n), t0, t1),
        }

    async def run(self) -> dict[str, Any]:
        o = self.o
        results: list[dict[str, Any]] = []
        slow_runs: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as self.session:
            for n in o.n:
                for r in range(o.repeats if n >= 1000 or o.small_repeats is None else o.small_repeats):
                    agent = await self.agent_run(n, fail=min(o.fail, n))
                    loop = await self.loop_run(n)
                    row = {"n": n, "repeat": r + 1, "agent": agent, "loop": loop}
                    if o.raw:
                        row["raw"] = await self.loop_run(n, "raw")
                    results.append(row)
                    print(progress(row), file=sys.stderr, flush=True)
                    self.keep({"runs": results})
            for cap in o.slow_caps if o.slow else []:
                for r in range(o.repeats):
                    run = await self.agent_run(o.slow_n, slow=o.slow, cap=cap or o.max_concurrent)
                    run.update(repeat=r + 1, cap=cap)
                    slow_runs.append(run)
                    self.keep({"runs": results, "slow_runs": slow_runs})
                    print(f"slow: n={o.slow_n} hanging={o.slow} max_concurrent_checks={cap or 'default'}: the others' "
                          f"lag p99 {fmt_ms(run['side']['lag_p99'])} ms", file=sys.stderr, flush=True)
            heal = await self.heal() if o.docker else None
            memory = await self.memory(max(o.n)) if o.tracemalloc else None
            gc_pauses = await self.gc_pauses(max(o.n)) if o.gcwatch else None
        slow = [summarise_slow([r for r in slow_runs if r["cap"] == cap], o, cap) for cap in o.slow_caps if o.slow]
        return {"runs": results, "summary": summarise(results), "slow": slow, "slow_runs": slow_runs,
                "heal": heal, "profile": self.hotspots, "memory": memory,
                "gc": gc_pauses}

    async def memory(self, n: int) -> str:
        """One more agent run at ``n``, under tracemalloc (bench/memsnap.py): its top allocation sites."""
        text = await self.instrumented("memsnap", n, f"memory-{n}.txt", self.o.tracemalloc, 0)
        print(f"memory of the agent at N = {n} under tracemalloc:\n" + "\n".join(text.splitlines()[:18]), file=sys.stderr)
        return text

    async def gc_pauses(self, n: int) -> dict[str, Any]:
        """One more agent run at ``n`` with its garbage collections timed (bench/gcwatch.py) over a window."""
        text = await self.instrumented("gcwatch", n, f"gc-{n}.json", self.o.warmup, self.o.gcwatch)
        if not text.startswith("{"):
            print(f"gc at N = {n}: {text}", file=sys.stderr)
            return {"error": text}
        summary: dict[str, Any] = json.loads(text)
        for gen, g in summary["generations"].items():
            print(f"gc at N = {n}: generation {gen}: {g['collections']} collections in {summary['seconds']:.0f} s, "
                  f"longest {g['max_ms']:.1f} ms, total {g['total_ms']:.0f} ms", file=sys.stderr)
        ob = summary["obmalloc"]
        print(f"pymalloc at N = {n}: arenas {ob['arenas_bytes'] / 2**20:.1f} MiB, live objects "
              f"{ob['allocated_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
        for name, st in summary["stalls"].items():
            print(f"event loop iterations busy {name.replace('_', ' ')}: {st['count']} of {summary['loop_iterations']}, "
                  f"{st['busy_s']:.2f} s, of which GC {st['gc_s']:.2f} s", file=sys.stderr)
        return summary

    async def instrumented(self, script: str, n: int, name: str, settle: float, window: float) -> str:
        """The agent at ``n`` under bench/SCRIPT.py, which writes ``out/NAME`` once told: ``NAME.go`` after
        ``settle`` seconds, then (if ``window``) ``NAME.stop`` that many seconds later."""
        out = Path(self.o.out)
        out.mkdir(parents=True, exist_ok=True)
        report = out / name
        go, stop = report.with_name(name + ".go"), report.with_name(name + ".stop")
        for path in (report, go, stop):
            path.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"lifeguard-bench-{script}-") as tmp:
            work, api_port = Path(tmp), free_port()
            proc = start_agent(work, self.config(n, work / "state", api_port, self.o.max_concurrent),
                               work / "agent.log", (str(HERE / f"{script}.py"), str(report)), self.o.agent_env)
            pin(proc.pid, self.o.agent_cpu)
            try:
                await self.wait_ready(proc, api_port, 120 + n / 10, work / "agent.log")
                await asyncio.sleep(settle)
                go.touch()
                if window:
                    await asyncio.sleep(window)
                    stop.touch()
                deadline = time.monotonic() + 300
                while not report.exists() and time.monotonic() < deadline and proc.poll() is None:
                    await asyncio.sleep(0.5)
                await asyncio.sleep(0.5)  # written whole
            finally:
                await asyncio.to_thread(stop_process, proc)
                go.unlink(missing_ok=True)
                stop.unlink(missing_ok=True)
        return report.read_text() if report.exists() else f"{script} wrote nothing"

    def keep(self, so_far: dict[str, Any]) -> None:
        """What is measured so far, in ``scale.partial.json``: a run that breaks later loses nothing."""
        out = Path(self.o.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scale.partial.json").write_text(json.dumps(so_far) + "\n")

    async def heal(self) -> dict[str, Any]:
        from heal import heal_times

        async def ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
            await self.wait_ready(proc, port, 60, log)

        return await heal_times(self.receiver, f"http://127.0.0.1:{self.receiver.port}/hook", self.o.docker,
                                self.o.agent_cpu, ready)


def progress(row: dict[str, Any]) -> str:
    a, lp = row["agent"], row["loop"]
    return (f"n={row['n']} repeat {row['repeat']}: agent {fmt(a['cpu_per_1000'], 3)} CPU-s/1k, loop "
            f"{fmt(lp['cpu_per_1000'], 3)}, RSS {a['rss_peak_mb']:.1f} MB, lag p99 "
            f"{fmt_ms(a['metrics_lag']['p99'])} ms, checked {a['side']['checked']}/{row['n']}")


def dig(d: dict[str, Any] | None, path: str) -> Any:
    for key in path.split("."):
        d = None if d is None else d.get(key)
    return d


def median_of(rows: list[dict[str, Any]], path: str, reduce: Callable[[list[float]], float] | None = None) -> Any:
    values = [v for v in (dig(r, path) for r in rows) if v is not None]
    if not values:
        return None
    return (reduce or statistics.median)(values)


SUMMARY_FIELDS = {
    "agent_cpu_per_1000": "agent.cpu_per_1000",
    "loop_cpu_per_1000": "loop.cpu_per_1000",
    "agent_rss_peak_mb": "agent.rss_peak_mb",
    "agent_rss_steady_mb": "agent.rss_steady_mb",
    "agent_rss_anon_mb": "agent.rss_anon_mb",
    "loop_rss_peak_mb": "loop.rss_peak_mb",
    "agent_rate_min": "agent.side.rate_min",
    "agent_rate_median": "agent.side.rate_median",
    "agent_cycle_p99": "agent.side.cycle_p99",
    "agent_side_lag_p99": "agent.side.lag_p99",
    "agent_lag_p50": "agent.metrics_lag.p50",
    "agent_lag_p99": "agent.metrics_lag.p99",
    "agent_lag_max": "agent.metrics_lag.max",
    "loop_lag_p50": "loop.own.lag.p50",
    "loop_lag_p99": "loop.own.lag.p99",
    "loop_lag_max": "loop.own.lag.max",
    "loop_cycle_p99": "loop.side.cycle_p99",
    "agent_skipped": "agent.side.skipped",
    "loop_skipped": "loop.own.skipped",
    "detect_median": "agent.alerts.detect_median",
    "detect_max": "agent.alerts.detect_max",
    "deliver_median": "agent.alerts.deliver_median",
    "deliver_max": "agent.alerts.deliver_max",
    "db_bytes_per_result": "agent.db_bytes_per_result",
    "raw_cpu_per_1000": "raw.cpu_per_1000",
}
WORST = {"agent_rate_min": min, "agent_skipped": max, "loop_skipped": max, "detect_max": max, "deliver_max": max,
         "agent_lag_max": max, "loop_lag_max": max}


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per N: the median over repeats of each figure (the worst for minima, maxima and skipped runs)."""
    out = []
    for n in dict.fromkeys(r["n"] for r in results):
        rows = [r for r in results if r["n"] == n]
        s: dict[str, Any] = {"n": n, "repeats": len(rows)}
        for name, path in SUMMARY_FIELDS.items():
            if path.startswith("raw.") and not any("raw" in r for r in rows):
                continue  # --raw not asked for
            s[name] = median_of(rows, path, WORST.get(name))
        a, lp = s["agent_cpu_per_1000"], s["loop_cpu_per_1000"]
        s["cpu_ratio"] = a / lp if a and lp else None
        s["every_target_checked"] = all(r["agent"]["side"]["checked"] == n for r in rows)
        out.append(s)
    return out


def summarise_slow(runs: list[dict[str, Any]], o: argparse.Namespace, cap: int | None) -> dict[str, Any]:
    return {
        "n": o.slow_n, "hanging": o.slow, "max_concurrent_checks": cap or o.max_concurrent, "repeats": len(runs),
        "other_side_lag_p99": median_of(runs, "side.lag_p99"),
        "other_cycle_p99": median_of(runs, "side.cycle_p99"),
        "other_rate_min": median_of(runs, "side.rate_min", min),
        "other_skipped": median_of(runs, "side.skipped", max),
        "metrics_lag_p99": median_of(runs, "metrics_lag.p99"),
        "hanging_rate_median": median_of(runs, "slow_side.rate_median"),
        "cpu_per_1000": median_of(runs, "cpu_per_1000"),
        "every_target_checked": all(r["side"]["checked"] == o.slow_n - o.slow for r in runs),
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.1f}"


COLUMNS = [
    ("N", lambda s: str(s["n"])),
    ("CPU-s/1k agent", lambda s: fmt(s["agent_cpu_per_1000"], 3)),
    ("loop", lambda s: fmt(s["loop_cpu_per_1000"], 3)),
    ("ratio", lambda s: fmt(s["cpu_ratio"])),
    ("raw", lambda s: fmt(s.get("raw_cpu_per_1000"), 3)),
    ("RSS peak MB", lambda s: fmt(s["agent_rss_peak_mb"], 1)),
    ("steady", lambda s: fmt(s["agent_rss_steady_mb"], 1)),
    ("anon", lambda s: fmt(s["agent_rss_anon_mb"], 1)),
    ("checks/s min", lambda s: fmt(s["agent_rate_min"], 3)),
    ("cycle p99 s", lambda s: fmt(s["agent_cycle_p99"], 3)),
    ("lag p50/p99/max ms", lambda s: "/".join(fmt_ms(s[f"agent_lag_{q}"]) for q in ("p50", "p99", "max"))),
    ("side lag p99 ms", lambda s: fmt_ms(s["agent_side_lag_p99"])),
    ("loop lag p99 ms", lambda s: fmt_ms(s["loop_lag_p99"])),
    ("skipped", lambda s: f"{s['agent_skipped']}/{s['loop_skipped']}"),
    ("detect med/max s", lambda s: f"{fmt(s['detect_median'])}/{fmt(s['detect_max'])}"),
    ("deliver med ms", lambda s: fmt_ms(s["deliver_median"])),
    ("DB B/result", lambda s: fmt(s["db_bytes_per_result"], 0)),
]


def table(summary: list[dict[str, Any]]) -> str:
    rows = [[name for name, _ in COLUMNS]] + [[cell(s) for _, cell in COLUMNS] for s in summary]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def verdicts(summary: list[dict[str, Any]], slows: list[dict[str, Any]]) -> list[tuple[str, bool | None]]:
    """The issue's targets, each with whether this run met it (None: not measured); the slow scenario's
    is judged on its first run (``--slow-caps`` order, the agent's default first unless told otherwise)."""
    slow = slows[0] if slows else None
    by_n = {s["n"]: s for s in summary}
    out: list[tuple[str, bool | None]] = []

    def check(label: str, ok: Callable[[], bool], needs: Any) -> None:
        out.append((label, None if needs is None else ok()))

    s3, s1 = by_n.get(3000), by_n.get(1000)
    check("3,000: every target at 1.00 checks/s", lambda: round(s3["agent_rate_min"], 2) >= 1.0, s3)
    check("3,000: cycle p99 <= 1.02 s", lambda: s3["agent_cycle_p99"] <= 1.02, s3)
    check("3,000: no skipped runs", lambda: s3["agent_skipped"] == 0, s3)
    check("3,000: CPU per 1,000 checks <= 1.0x the loop", lambda: s3["cpu_ratio"] <= 1.0, s3)
    check("3,000: RSS <= 100 MB", lambda: s3["agent_rss_peak_mb"] <= 100, s3)
    check("1,000: CPU per 1,000 checks <= 0.9x the loop", lambda: s1["cpu_ratio"] <= 0.9, s1)
    check("1,000: RSS <= 80 MB", lambda: s1["agent_rss_peak_mb"] <= 80, s1)
    check("1,000 with 200 hanging: the other 800 keep p99 lag < 50 ms",
          lambda: slow["other_side_lag_p99"] < 0.05,
          slow if slow and slow["n"] == 1000 and slow["hanging"] == 200 else None)
    return out


def repeats(o: argparse.Namespace) -> str:
    if o.small_repeats is None or o.small_repeats == o.repeats:
        return f"{o.repeats} repeat(s)"
    return f"{o.repeats} repeat(s) at N >= 1,000, {o.small_repeats} below"


def machine(targets: Targets) -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    version = None
    if targets.kind == "nginx":
        done = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        version = done.stderr.strip().rsplit("/", 1)[-1]
    return {
        "nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
        "aiohttp": aiohttp.__version__, "kernel": platform.release(),
        "targets": targets.kind, "targets_version": version,
        "loadavg_at_start": os.getloadavg(),
    }


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> str:
    """CPU per 1,000 checks and lag p99 against N; a message instead when it cannot be drawn."""
    if len(summary) < 2:
        return "no plot: it needs at least two N"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (.venv/bin/pip install -e '.[bench]')"
    ns = [s["n"] for s in summary]
    fig, (cpu, lag) = plt.subplots(1, 2, figsize=(11, 4.2))
    cpu.plot(ns, [s["agent_cpu_per_1000"] for s in summary], "o-", label="lifeguard run")
    cpu.plot(ns, [s["loop_cpu_per_1000"] for s in summary], "s--", label="bare aiohttp loop")
    cpu.set_ylabel("CPU seconds per 1,000 checks")
    cpu.set_ylim(bottom=0)
    for series, label, style in (("agent_lag_p99", "lifeguard: lag p99 (/metrics)", "o-"),
                                 ("agent_side_lag_p99", "lifeguard: lag p99 (targets' side)", "^-"),
                                 ("loop_lag_p99", "bare loop: lag p99 (its own)", "s--")):
        lag.plot(ns, [1000 * (s[series] or 0) for s in summary], style, label=label)
    lag.set_ylabel("schedule lag p99, ms")
    lag.set_ylim(bottom=0)
    for ax in (cpu, lag):
        ax.set_xscale("log")
        ax.set_xticks(ns, [f"{n:,}" for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("HTTP targets at 1 s (N)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"


def options(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="100,300,1000,3000", help="target counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--small-repeats", type=int, default=None, help="repeats for N < 1,000 (default: --repeats)")
    ap.add_argument("--window", type=float, default=30.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after the agent answers, before measuring")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds for what a /metrics scrape delayed to be over, before a window starts")
    ap.add_argument("--fail", type=int, default=10, help="targets made to fail after each window (detection)")
    ap.add_argument("--slow", type=int, default=200, help="hanging targets in the slow scenario (0: skip it)")
    ap.add_argument("--slow-n", type=int, default=1000, help="targets in the slow scenario")
    ap.add_argument("--max-concurrent", type=int, default=None, help="agent.max_concurrent_checks (default: the agent's)")
    ap.add_argument("--slow-caps", default="default",
                    help="max_concurrent_checks values to run the slow scenario with, comma-separated (default: --max-concurrent)")
    ap.add_argument("--agent-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the agent's process (e.g. MALLOC_ARENA_MAX=2); repeatable")
    ap.add_argument("--agent-launcher", metavar="SCRIPT",
                    help="start the measured agents as bench/SCRIPT.py (e.g. tryout: a change tried from outside)")
    ap.add_argument("--targets", choices=("auto", "nginx", "aiohttp"), default="auto")
    ap.add_argument("--agent-cpu", type=int, default=1, help="core of the agent and the loop (-1: no pinning)")
    ap.add_argument("--targets-cpu", type=int, default=0, help="core of the targets and this script (-1: none)")
    ap.add_argument("--raw", action="store_true",
                    help="also run the loop with a bare asyncio HTTP/1.1 client (the floor, for comparison)")
    ap.add_argument("--docker", type=int, default=0, metavar="ROUNDS",
                    help="heal time: this many kill-and-heal rounds against a dockerd of its own (0: skip; needs root)")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="SECONDS",
                    help="one more agent run at the largest N under tracemalloc: its top allocation sites SECONDS after it answers")
    ap.add_argument("--gcwatch", type=int, default=0, metavar="SECONDS",
                    help="one more agent run at the largest N with its garbage collections timed over SECONDS")
    ap.add_argument("--profile", type=int, default=0, help="py-spy the agent this many seconds at the largest N")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for scale.json and scale.png")
    ap.add_argument("--smoke", action="store_true", help="N = 20, short windows, one repeat: a quick correctness run")
    o = ap.parse_args(argv)
    if o.smoke:
        o.n, o.repeats, o.window, o.warmup, o.settle = "20", 1, 2.0, 0.6, 0.3
        o.fail, o.slow, o.slow_n = min(o.fail, 3), min(o.slow, 4), 20
    o.out = str(Path(o.out).resolve())  # the instrumented agents run elsewhere and write there
    o.n = [int(x) for x in str(o.n).split(",")]
    o.agent_env = dict(item.split("=", 1) for item in o.agent_env)
    o.slow_caps = [None if x == "default" else int(x) for x in o.slow_caps.split(",")]
    cpus = os.sched_getaffinity(0)
    for key in ("agent_cpu", "targets_cpu"):
        value = getattr(o, key)
        setattr(o, key, value if value in cpus and len(cpus) > 1 else None)
    return o


async def main(argv: list[str] | None = None) -> int:
    o = options(argv)
    nofile = raise_open_files()
    if max(o.n) * 2 + 200 > nofile:
        print(f"warning: the open-file limit ({nofile}) is low for N = {max(o.n)}", file=sys.stderr)
    pin(os.getpid(), o.targets_cpu)
    targets = make_targets(o.targets, o.targets_cpu, nofile)
    receiver = Receiver()
    await targets.start()
    await receiver.start()
    started = datetime.now(UTC)
    try:
        report = await Bench(o, targets, receiver).run()
    finally:
        await receiver.stop()
        await targets.stop()
    report = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bench/scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(targets),
        "settings": {k: v for k, v in vars(o).items() if k != "out"},
        **report,
    }
    report["targets_met"] = [{"target": label, "met": ok} for label, ok in verdicts(report["summary"], report["slow"])]
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "scale.partial.json").unlink(missing_ok=True)

    m = report["machine"]
    print(f"{report['date']}: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, targets {m['targets']}; "
          f"agent and loop on CPU {o.agent_cpu}, targets on CPU {o.targets_cpu}; "
          f"{repeats(o)} of {o.window:g} s windows after {o.warmup:g} s warm-up")
    print(table(report["summary"]))
    print()
    for s in report["slow"]:
        cap = s["max_concurrent_checks"] or "default"
        print(f"{s['n']} targets, {s['hanging']} hanging until the timeout, max_concurrent_checks {cap}: "
              f"the other {s['n'] - s['hanging']} lag p99 {fmt_ms(s['other_side_lag_p99'])} ms (targets' side), cycle p99 {fmt(s['other_cycle_p99'], 3)} s, "
              f"slowest {fmt(s['other_rate_min'], 3)} checks/s, skipped {s['other_skipped']}; "
              f"all checks' lag p99 {fmt_ms(s['metrics_lag_p99'])} ms (/metrics)")
    heal = report["heal"]
    if heal and heal.get("error"):
        print(f"heal: {heal['error']}")
    elif heal:
        print(f"heal (container killed -> ..., median of {heal['healed']}/{heal['rounds']} rounds): incident.opened "
              f"{fmt(heal['opened_median'])} s, running again {fmt(heal['running_again_median'])} s, "
              f"first passing check (incident.resolved) {fmt(heal['resolved_median'])} s")
    print()
    for entry in report["targets_met"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[entry["met"]]
        print(f"  [{mark}] {entry['target']}")
    print(plot(report["summary"], out / "scale.png",
               f"{report['date']} · {m['nproc']} × {m['cpu']} · Python {m['python']} · targets: {m['targets']}"))
    print(f"json: {out / 'scale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
