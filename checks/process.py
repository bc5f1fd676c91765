"""The ``process`` check: are the processes that make up a service running, and within bounds?

Processes are selected by exactly one of ``match.name`` (the process name, as ``ps -o comm``
shows it but not cut at 15 characters), ``match.cmdline`` (a regular expression searched in the
command line, its arguments joined with spaces) or ``match.pidfile`` (the process whose PID the
file holds). The agent's own process is never a match — a ``cmdline`` pattern written in the
config would otherwise match the agent whenever its own command line quotes it — and neither is
a zombie (it has exited; only its entry is left).

CPU is measured per process between two runs of the check: the check keeps each process's CPU
times from its previous run. A process it has not seen before (the first run, a new PID) is
measured over a short window (``CPU_WINDOW``) inside the run instead, so every run judges every
process. psutil reads ``/proc``: the whole probe runs in a thread of the check's own
(``checks.blocking``), off the event loop.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from agent.config import CheckConfigBase
from agent.config.model import After, KeyedError
from agent.config.types import ConfigModel, NonEmptyStr, NonNegativeCount, NonNegativeFloat, Size, absolute, base_dir
from agent.sizes import format_size
from checks.base import Check, CheckContext, Outcome
from checks.blocking import OwnThread, StillRunning

CPU_WINDOW = 0.2
"""Seconds a process seen for the first time is measured over (also the shortest window between runs)."""
SHOWN_PROCESSES = 20
"""Matched processes listed in the details."""

_MATCH_KEYS = ("name", "cmdline", "pidfile")


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _relative_to_config(value: Path | None) -> Path | None:
    return None if value is None else absolute(value, base_dir())


class ProcessMatch(ConfigModel):
    """Which processes the check counts: exactly one of the three keys."""

    name: NonEmptyStr | None = None
    cmdline: Annotated[NonEmptyStr | None, After(_regex)] = None
    pidfile: Annotated[Path | None, After(_relative_to_config)] = None

    def __post_init__(self) -> None:
        given = [key for key in _MATCH_KEYS if getattr(self, key) is not None]
        if len(given) > 1:
            raise KeyedError(given[1], f"one of name, cmdline, pidfile only (also {given[0]})")
        if not given:
            raise ValueError("needs one of name, cmdline or pidfile")

    def describe(self) -> str:
        if self.name is not None:
            return f"name {self.name!r}"
        if self.cmdline is not None:
            return f"cmdline /{self.cmdline}/"
        return f"pidfile {self.pidfile}"


class ProcessCheckConfig(CheckConfigBase):
    """Count the matching processes and bound their CPU and memory."""

    type: Literal["process"]
    match: ProcessMatch
    min_count: NonNegativeCount = 1
    max_count: NonNegativeCount | None = None
    max_cpu_percent: NonNegativeFloat | None = None
    warn_cpu_percent: NonNegativeFloat | None = None
    max_rss: Size | None = None
    warn_rss: Size | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_count is not None and self.max_count < self.min_count:
            raise KeyedError("max_count", f"{self.max_count} is below min_count {self.min_count}")
        for warn, limit_key in (("warn_cpu_percent", "max_cpu_percent"), ("warn_rss", "max_rss")):
            value, limit = getattr(self, warn), getattr(self, limit_key)
            if value is not None and limit is not None and value > limit:
                raise KeyedError(warn, f"is above {limit_key} (a warning comes before the failure)")


@dataclass(frozen=True, slots=True)
class _Seen:
    """One matched process as one run saw it."""

    pid: int
    name: str
    rss: int
    cpu_percent: float | None


class ProcessCheck(Check[ProcessCheckConfig]):
    """Counts the processes ``config.match`` selects; bounds each one's CPU and memory."""

    type: ClassVar[str] = "process"
    config_model = ProcessCheckConfig
    needs = frozenset()

    def __init__(self, config: ProcessCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        self._label = config.match.describe()
        self._pattern = re.compile(config.match.cmdline) if config.match.cmdline is not None else None
        # (pid, create_time) -> (CPU seconds, monotonic time) at the previous run
        self._cpu: dict[tuple[int, float], tuple[float, float]] = {}
        self._thread = OwnThread(config.name)  # one run at a time reads this check's figures

    @property
    def target(self) -> str:
        return self._label

    async def probe(self) -> Outcome:
        try:
            return await self._thread.call(self._probe)
        except StillRunning as exc:
            return Outcome(False, str(exc))

    # -- in a worker thread -------------------------------------------------------------------

    def _probe(self) -> Outcome:
        import psutil

        try:
            procs = self._matching(psutil)
        except _NoPid as exc:
            if self.config.min_count > 0:
                return Outcome(False, str(exc), {"count": 0, "processes": []})
            procs = []
        return self._judge(self._measure(psutil, procs))

    def _matching(self, psutil: Any) -> list[Any]:
        match = self.config.match
        own = os.getpid()
        if match.pidfile is not None:
            pid = _read_pidfile(match.pidfile)
            try:
                proc = psutil.Process(pid)
                alive = pid != own and proc.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            return [proc] if alive else []
        found = []
        # Without attrs: process_iter's Process objects are shared by every thread, and so would
        # be the ``info`` it sets on them; as_dict's answer is this thread's own.
        for proc in psutil.process_iter():
            try:
                info = proc.as_dict(["name", "cmdline", "status"])
            except psutil.Error:
                continue
            if proc.pid == own or info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            if match.name is not None:
                if info.get("name") == match.name:
                    found.append(proc)
            elif self._pattern is not None:
                cmdline = info.get("cmdline")
                if cmdline and self._pattern.search(" ".join(cmdline)):
                    found.append(proc)
        return found

    def _measure(self, psutil: Any, procs: Iterable[Any]) -> list[_Seen]:
        """Name, RSS and CPU percent of each process still there; the CPU baseline kept for the next run."""
        keyed: list[tuple[tuple[int, float], Any]] = []
        for proc in procs:
            try:
                keyed.append(((proc.pid, proc.create_time()), proc))
            except psutil.Error:
                continue  # it ended meanwhile
        before: dict[tuple[int, float], tuple[float, float]] = {}
        if self._needs_cpu:
            now = time.monotonic()
            fresh = {k: p for k, p in keyed if k not in self._cpu or now - self._cpu[k][1] < CPU_WINDOW}
            before = {k: v for k, v in self._cpu.items() if k not in fresh}
            for key, proc in fresh.items():
                try:
                    before[key] = (_cpu_seconds(proc), time.monotonic())
                except psutil.Error:
                    continue
            if fresh:
                time.sleep(CPU_WINDOW)
        out: list[_Seen] = []
        baseline: dict[tuple[int, float], tuple[float, float]] = {}
        for key, proc in keyed:
            try:
                with proc.oneshot():
                    name = proc.name()
                    rss = proc.memory_info().rss
                    cpu = _cpu_seconds(proc)
            except psutil.Error:
                continue
            at = time.monotonic()
            percent = None
            if key in before and at > before[key][1]:
                percent = round(max(0.0, 100.0 * (cpu - before[key][0]) / (at - before[key][1])), 1)
            baseline[key] = (cpu, at)
            out.append(_Seen(key[0], name, rss, percent))
        self._cpu = baseline  # processes gone since are forgotten
        out.sort(key=lambda s: s.pid)
        return out

    @property
    def _needs_cpu(self) -> bool:
        return self.config.max_cpu_percent is not None or self.config.warn_cpu_percent is not None

    # -- the verdict (pure) -------------------------------------------------------------------

    def _judge(self, seen: list[_Seen]) -> Outcome:
        cfg = self.config
        count = len(seen)
        details: dict[str, Any] = {
            "count": count,
            "processes": [
                {"pid": s.pid, "name": s.name, "rss": s.rss, "cpu_percent": s.cpu_percent}
                for s in seen[:SHOWN_PROCESSES]
            ],
        }
        matches = f"{_plural(count)} {'matches' if count == 1 else 'match'} {self._label}"
        if count < cfg.min_count:
            return Outcome(False, f"{matches} (expected at least {cfg.min_count})", details)
        if cfg.max_count is not None and count > cfg.max_count:
            return Outcome(False, f"{matches} (expected at most {cfg.max_count})", details)
        failures = self._over(seen, cfg.max_cpu_percent, cfg.max_rss, "max")
        if failures:
            return Outcome(False, "; ".join(failures), details)
        warnings = self._over(seen, cfg.warn_cpu_percent, cfg.warn_rss, "warn")
        if warnings:
            return Outcome(True, "; ".join(warnings), details, warning=True)
        return Outcome(True, matches, details)

    def _over(self, seen: list[_Seen], cpu_limit: float | None, rss_limit: int | None, prefix: str) -> list[str]:
        found = []
        for s in seen:
            who = f"process {s.pid} ({s.name})"
            if cpu_limit is not None and s.cpu_percent is not None and s.cpu_percent > cpu_limit:
                found.append(f"{who} uses {s.cpu_percent:g}% CPU ({prefix}_cpu_percent {cpu_limit:g})")
            if rss_limit is not None and s.rss > rss_limit:
                found.append(f"{who} uses {format_size(s.rss)} of memory ({prefix}_rss {format_size(rss_limit)})")
        if len(found) > 3:
            found = [*found[:3], f"and {len(found) - 3} more"]
        return found


class _NoPid(Exception):
    """The pidfile does not name a process: missing, unreadable or not a number."""


def _read_pidfile(path: Path) -> int:
    try:
        text = path.read_text(errors="replace")[:64].strip()
    except FileNotFoundError:
        raise _NoPid(f"pidfile {path} not found") from None
    except OSError as exc:
        raise _NoPid(f"cannot read pidfile {path}: {exc.strerror or exc}") from None
    first = text.split()[0] if text.split() else ""
    if not first.isascii() or not first.isdigit() or int(first) <= 0:
        raise _NoPid(f"pidfile {path} does not hold a PID")
    return int(first)


def _plural(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"



def _cpu_seconds(proc: Any) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)
