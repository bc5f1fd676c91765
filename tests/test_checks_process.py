"""The process check against real processes the tests start (each with an argument no other process has)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.config import ConfigError, load_config
from checks import CheckContext, build_check
from checks.process import ProcessCheck, ProcessCheckConfig

SLEEP = "import time; print('ready', flush=True); time.sleep(300)"


class Processes:
    """Starts processes for one test and ends them, by PID, when it is over."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.started.append(proc)
        return proc

    def python(self, code: str, marker: str) -> subprocess.Popen[bytes]:
        """A Python process running ``code`` with ``marker`` as its argument; returns once it said ready."""
        proc = self.start([sys.executable, "-c", code, marker])
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        return proc

    def end(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def procs() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.end()


@pytest.fixture
def marker() -> str:
    return f"lifeguard-test-{uuid.uuid4().hex}"


def process_check(match: dict[str, Any], **keys: Any) -> ProcessCheck:
    cfg = ProcessCheckConfig.model_validate({"name": "svc", "type": "process", "match": match, **keys})
    check = build_check(cfg, CheckContext())
    assert isinstance(check, ProcessCheck)
    return check


async def test_processes_are_counted_by_a_cmdline_regex(procs: Processes, marker: str) -> None:
    started = [procs.python(SLEEP, marker) for _ in range(2)]
    check = process_check({"cmdline": f"-c .* {marker}$"}, min_count=2)
    result = await check.run()
    assert result.ok and result.message == f"2 processes match cmdline /-c .* {marker}$/"
    assert result.details["count"] == 2
    assert sorted(p["pid"] for p in result.details["processes"]) == sorted(p.pid for p in started)

    too_many = await process_check({"cmdline": marker}, max_count=1).run()
    assert not too_many.ok and too_many.message == f"2 processes match cmdline /{marker}/ (expected at most 1)"


async def test_a_missing_process_fails(marker: str) -> None:
    result = await process_check({"cmdline": marker}).run()
    assert not result.ok and result.message == f"0 processes match cmdline /{marker}/ (expected at least 1)"


async def test_none_expected_and_none_running_passes(marker: str) -> None:
    result = await process_check({"cmdline": marker}, min_count=0, max_count=0).run()
    assert result.ok


async def test_processes_are_matched_by_name(procs: Processes, tmp_path: Path) -> None:
    name = f"lg{uuid.uuid4().hex[:10]}"  # under 15 characters: the kernel's own limit on a name
    program = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    proc = procs.start([str(program), "300"])
    result = await process_check({"name": name}).run()
    assert result.ok and result.message == f"1 process matches name {name!r}"
    assert result.details["processes"][0]["pid"] == proc.pid


async def test_a_pidfile_names_the_process(procs: Processes, marker: str, tmp_path: Path) -> None:
    proc = procs.python(SLEEP, marker)
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{proc.pid}\n")
    result = await process_check({"pidfile": str(pidfile)}).run()
    assert result.ok and result.details["processes"][0]["pid"] == proc.pid

    proc.kill()
    proc.wait()  # reaped: the PID names no process now
    result = await process_check({"pidfile": str(pidfile)}).run()
    assert not result.ok and result.message == f"0 processes match pidfile {pidfile} (expected at least 1)"


@pytest.mark.parametrize(("content", "reason"), [(None, "not found"), ("garbage\n", "does not hold a PID"),
                                                  ("", "does not hold a PID"), ("-5", "does not hold a PID")])
async def test_a_pidfile_that_names_no_process_fails(tmp_path: Path, content: str | None, reason: str) -> None:
    pidfile = tmp_path / "svc.pid"
    if content is not None:
        pidfile.write_text(content)
    result = await process_check({"pidfile": str(pidfile)}).run()
    assert not result.ok and result.message == f"pidfile {pidfile} {reason}"


async def test_the_agents_own_process_is_never_a_match() -> None:
    own = " ".join(psutil.Process().cmdline())
    result = await process_check({"cmdline": f"^{re.escape(own)}$"}).run()
    assert not result.ok and result.details["count"] == 0

    pidfile_result = await process_check({"pidfile": _pidfile_of(os.getpid())}).run()
    assert not pidfile_result.ok


async def test_max_rss_fails_a_process_that_uses_more(procs: Processes, marker: str) -> None:
    hog = procs.python("blob = b'x' * (80 * 1024 * 1024); " + SLEEP, marker)
    result = await process_check({"cmdline": marker}, max_rss="40MB").run()
    assert not result.ok
    assert re.fullmatch(rf"process {hog.pid} \(python[0-9.]*\) uses [0-9.]+ MB of memory \(max_rss 40 MB\)",
                        result.message), result.message
    assert result.details["processes"][0]["rss"] > 80 * 1024 * 1024


async def test_warn_rss_passes_with_a_warning(procs: Processes, marker: str) -> None:
    procs.python("blob = b'x' * (80 * 1024 * 1024); " + SLEEP, marker)
    result = await process_check({"cmdline": marker}, warn_rss="40MiB", max_rss="1GiB").run()
    assert result.ok and result.warning and result.status == "warning"
    assert "(warn_rss 41.9 MB)" in result.message


async def test_cpu_is_measured_per_process(procs: Processes, marker: str) -> None:
    busy = procs.python("print('ready', flush=True)\nwhile True: pass", marker + "-busy")
    procs.python(SLEEP, marker + "-idle")
    busy_check = process_check({"cmdline": f"{marker}-busy"}, max_cpu_percent=1)
    idle_check = process_check({"cmdline": f"{marker}-idle"}, max_cpu_percent=50)
    for _ in range(2):  # the first run measures over a short window, the next since the run before
        result = await busy_check.run()
        assert not result.ok and result.message.startswith(f"process {busy.pid} ("), result.message
        assert "% CPU (max_cpu_percent 1)" in result.message
        idle = await idle_check.run()
        assert idle.ok and idle.details["processes"][0]["cpu_percent"] < 50


def _pidfile_of(pid: int) -> str:
    import tempfile

    handle, path = tempfile.mkstemp(suffix=".pid")
    os.write(handle, str(pid).encode())
    os.close(handle)
    return path


# -- config ------------------------------------------------------------------------------------


def errors(folder: Path, check: str) -> list[str]:
    path = folder / "config.yaml"
    path.write_text(f"checks: [{check}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return caught.value.errors


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("{name: p, type: process, match: {name: nginx, cmdline: nginx}}",
         "checks[0].match.cmdline: one of name, cmdline, pidfile only (also name)"),
        ("{name: p, type: process, match: {}}", "checks[0].match: needs one of name, cmdline or pidfile"),
        ("{name: p, type: process}", "checks[0].match: required"),
        ("{name: p, type: process, match: {cmdline: '(unclosed'}}",
         "checks[0].match.cmdline: invalid regular expression: missing ), unterminated subpattern at position 0"),
        ("{name: p, type: process, match: {name: x}, max_rss: 500}",
         "checks[0].max_rss: invalid size 500 (a unit is required, e.g. '500MB')"),
        ("{name: p, type: process, match: {name: x}, max_rss: 5XB}",
         "checks[0].max_rss: invalid size '5XB' (a number and one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, e.g. '500MB')"),
        ("{name: p, type: process, match: {name: x}, min_count: -1}", "checks[0].min_count: must be 0 or more, got -1"),
        ("{name: p, type: process, match: {name: x}, min_count: 3, max_count: 2}",
         "checks[0].max_count: 2 is below min_count 3"),
        ("{name: p, type: process, match: {name: x}, max_cpu_percent: -5}",
         "checks[0].max_cpu_percent: must be 0 or more, got -5"),
        ("{name: p, type: process, match: {name: x}, max_cpu_percent: lots}", "checks[0].max_cpu_percent: expected a number"),
        ("{name: p, type: process, match: {name: x}, max_rss: 1GB, warn_rss: 2GB}",
         "checks[0].warn_rss: is above max_rss (a warning comes before the failure)"),
        ("{name: p, type: process, match: {name: x}, mac_count: 3}", "checks[0].mac_count: unknown key (did you mean 'max_count'?)"),
    ],
)
def test_config_mistakes_are_located(tmp_path: Path, check: str, expected: str) -> None:
    assert errors(tmp_path, check) == [expected]


def test_sizes_read_decimal_and_binary_units(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("checks: [{name: p, type: process, match: {pidfile: run/p.pid}, max_rss: 1.5GiB, warn_rss: 500mb}]\n")
    cfg = load_config(path, {}).check("p")
    assert isinstance(cfg, ProcessCheckConfig)
    assert (cfg.max_rss, cfg.warn_rss) == (int(1.5 * 1024**3), 500 * 1000**2)
    assert cfg.match.pidfile == tmp_path / "run" / "p.pid"  # relative to the config file
