"""``lifeguard run``'s lifecycle as a real subprocess with real signals: slow starts, failed
starts, refused starts (their exit codes and one-line errors), a second signal, SIGHUP."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_agent import SECRET, Receiver, agent_config, free_port, wait_until
from tests.fixtures_docker import SilentDocker


def events(agent: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in agent.log_events() if e.get("event") == name]


def hung_docker_config(docker: SilentDocker) -> dict[str, Any]:
    cfg = agent_config([{"name": "app", "type": "container", "container": "app"}], [])
    cfg["docker"] = {"url": docker.url, "timeout": "60s"}
    return cfg


async def test_a_docker_engine_that_never_answers_holds_up_nothing(silent_docker, target, spawn_agent) -> None:
    cfg = hung_docker_config(silent_docker)
    cfg["checks"].append({"name": "web", "type": "http", "url": target.url})
    cfg["checks"][0].update(timeout="3s", interval="3s")
    agent = spawn_agent(cfg)
    await agent.ready(timeout=15)  # docker.timeout is 60 s: the API did not wait for the engine
    assert not events(agent, "docker.connected")

    async def checks() -> dict[str, Any]:
        _, body = await agent.api("/api/checks")
        return {c["name"]: c for c in body["checks"]}

    async def both_ran() -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = await checks()
            if all(c["last_result"] for c in found.values()):
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"checks never ran: {found}")

    found = await both_ran()
    assert found["web"]["state"] == "passing"
    assert found["app"]["state"] == "failing"
    assert found["app"]["last_result"]["message"].startswith(f"Docker unreachable at {silent_docker.url}: ")
    status, health = await agent.api("/health")
    assert status == 200 and health["status"] == "degraded"
    assert any(p.startswith("docker unreachable: Docker unreachable at") for p in health["problems"])
    agent.signal(signal.SIGTERM)
    began = time.monotonic()
    assert await agent.wait(timeout=10) == 0
    assert time.monotonic() - began < 8  # far less than docker.timeout (60 s)
    assert events(agent, "daemon.stopped")[0]["reason"] == "signal SIGTERM"


@pytest.mark.parametrize("moment", ["docker connected", "api ready"])
async def test_sigterm_while_docker_hangs_exits_0_promptly(moment, silent_docker, spawn_agent) -> None:
    agent = spawn_agent(hung_docker_config(silent_docker))
    if moment == "docker connected":
        await asyncio.wait_for(silent_docker.connected.wait(), 20)  # the agent is waiting on Docker
    else:
        await agent.ready()
    agent.signal(signal.SIGTERM)
    began = time.monotonic()
    assert await agent.wait(timeout=10) == 0
    assert time.monotonic() - began < 5  # far less than docker.timeout (60 s)
    assert events(agent, "daemon.stopped")[0]["events_pending"] == 0
    assert "Traceback" not in agent.log_text()


async def test_sighup_during_a_slow_start_does_not_kill_the_agent(silent_docker, spawn_agent) -> None:
    agent = spawn_agent(hung_docker_config(silent_docker))
    await asyncio.wait_for(silent_docker.connected.wait(), 20)
    agent.signal(signal.SIGHUP)
    # Applied at once, or once the start is over: either way the agent lives on.
    await wait_until(lambda: events(agent, "reload.applied"), 10, "the reload")
    assert agent.proc.poll() is None
    agent.signal(signal.SIGINT)
    assert await agent.wait(timeout=10) == 0


async def test_a_second_sigterm_exits_at_once_with_code_1(target, spawn_agent) -> None:
    receiver = Receiver()
    receiver.hang = True  # takes the delivery and never answers: the shutdown waits its 5 s for it
    await receiver.start()
    try:
        target.status = 500
        cfg = agent_config(
            [{"name": "api", "type": "http", "url": target.url}],
            [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "60s"}],
        )
        agent = spawn_agent(cfg, {"HOOK_SECRET": SECRET})
        await agent.ready()
        await wait_until(lambda: receiver.requests, 10, "a delivery in flight")
        agent.signal(signal.SIGTERM)
        await wait_until(
            lambda: [e for e in events(agent, "daemon.shutdown") if e["step"] == "in-flight deliveries"],
            5, "the shutdown to wait for the delivery",
        )
        agent.signal(signal.SIGTERM)
        began = time.monotonic()
        assert await agent.wait(timeout=5) == 1
        assert time.monotonic() - began < 2
        forced = events(agent, "daemon.forced_exit")
        assert forced and forced[0]["signal"] == "SIGTERM" and forced[0]["exit_code"] == 1
        assert not events(agent, "daemon.stopped")
    finally:
        receiver.release.set()
        await receiver.stop()


async def test_an_api_address_in_use_exits_4_after_closing_what_started(target, spawn_agent) -> None:
    cfg = agent_config([{"name": "api", "type": "http", "url": target.url}], [])
    port = int(cfg["agent"]["api"]["listen"].rsplit(":", 1)[1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        agent = spawn_agent(cfg)
        assert await agent.wait(timeout=20) == 4  # the API's address is unusable
    failed = events(agent, "lifecycle.start_failed")
    assert failed and failed[0]["component"] == "api"
    assert [e["step"] for e in events(agent, "daemon.shutdown")] == [
        "finish postmortem drafts", "flush results", "close clients", "close database"]
    stopped = events(agent, "daemon.stopped")[0]
    assert stopped["reason"].startswith("api failed to start:")
    assert not events(agent, "daemon.started")
    assert error_lines(agent) == [
        f"lifeguard: API cannot listen on 127.0.0.1:{port}: address already in use; "
        "stop what listens there (another lifeguard?) or change agent.api.listen"
    ]
    assert "Traceback" not in agent.log_text()


async def test_sigterm_stops_every_part_in_the_documented_order(target, spawn_agent) -> None:
    agent = spawn_agent(agent_config([{"name": "api", "type": "http", "url": target.url}], [], api={"listen": f"127.0.0.1:{free_port()}"}))
    await agent.ready()
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    steps = [(e["step"], e["grace_s"]) for e in events(agent, "daemon.shutdown")]
    assert [s for s, _ in steps] == [
        "stop scheduling", "stop policy timers", "finish heals and evidence", "in-flight deliveries",
        "close API", "finish postmortem drafts", "flush results", "close clients", "close database",
    ]
    assert dict(steps)["finish heals and evidence"] == 5.0 and dict(steps)["in-flight deliveries"] == 5.0
    stopped = events(agent, "daemon.stopped")[0]
    assert stopped["reason"] == "signal SIGTERM" and stopped["events_pending"] == 0


# -- refused starts: one line naming the file or address and what to do, a distinct exit code ------
def error_lines(agent: Any) -> list[str]:
    """The one-line errors the command printed (stderr shares the agent's log file)."""
    return [line for line in agent.log_text().splitlines() if line.startswith("lifeguard: ")]


def db_with_data(path: Path) -> None:
    from agent.store import Store

    store = Store(path)
    store.open()
    store.db.execute("CREATE TABLE ballast (x)")
    store.db.executemany("INSERT INTO ballast VALUES (?)", [("x" * 200,)] * 2000)
    store.close()


def random_bytes(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(64 * 1024))


def truncated(path: Path) -> None:
    db_with_data(path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", [random_bytes, truncated], ids=["random bytes", "truncated"])
async def test_a_corrupt_database_refuses_the_start_with_exit_3_and_is_left_alone(damage, tmp_path, spawn_agent) -> None:
    db = tmp_path / "state" / "lifeguard.db"
    damage(db)
    before = db.read_bytes()
    agent = spawn_agent(agent_config([], []))
    assert await agent.wait(timeout=20) == 3
    [line] = error_lines(agent)
    assert line.startswith(f"lifeguard: database unusable: {db}: not a usable SQLite database (")
    assert line.endswith("; restore it from a backup, or start with --move-corrupt-db to move it aside and begin anew")
    assert "Traceback" not in agent.log_text()
    assert db.read_bytes() == before  # never replaced without being told to
    assert sorted(p.name for p in db.parent.iterdir() if "corrupt" in p.name) == []


async def test_move_corrupt_db_moves_it_aside_and_starts_anew(tmp_path, target, spawn_agent) -> None:
    db = tmp_path / "state" / "lifeguard.db"
    random_bytes(db)
    before = db.read_bytes()
    agent = spawn_agent(agent_config([{"name": "web", "type": "http", "url": target.url}], []), args=["--move-corrupt-db"])
    await agent.ready()
    [moved] = events(agent, "store.moved_aside")
    aside = Path(moved["moved_to"])
    assert aside.parent == db.parent and aside.name.startswith("lifeguard.db.corrupt-")
    assert len(aside.name) == len("lifeguard.db.corrupt-20250101T000000Z")
    assert aside.read_bytes() == before
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0
    with sqlite3.connect(db) as fresh:
        assert fresh.execute("PRAGMA user_version").fetchone()[0] >= 1


def _immutable(folder: Path) -> bool:
    """As root, modes do not stop writes: make the folder immutable instead, where the file system can."""
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


async def test_a_state_dir_that_cannot_be_written_refuses_the_start_with_exit_3(tmp_path, spawn_agent) -> None:
    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() == 0:
        # Root ignores mode 0555; an immutable folder refuses it as 0555 refuses anyone else.
        if not _immutable(state):
            pytest.skip("running as root and chattr +i is unavailable here: no folder root cannot write")
        undo = ["chattr", "-i", str(state)]
    else:
        state.chmod(0o555)
        undo = ["chmod", "700", str(state)]
    try:
        agent = spawn_agent(agent_config([], []))
        assert await agent.wait(timeout=20) == 3
    finally:
        subprocess.run(undo, check=True)
    [line] = error_lines(agent)
    assert line.startswith(f"lifeguard: database unusable: {state}: cannot be written (")
    assert line.endswith(f"give the agent's user write access to {state} (or point agent.state_dir elsewhere)")
    assert "Traceback" not in agent.log_text()


async def test_a_database_locked_by_another_process_refuses_the_start_with_exit_3(tmp_path, spawn_agent) -> None:
    db = tmp_path / "state" / "lifeguard.db"
    db_with_data(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "db.execute('PRAGMA locking_mode=EXCLUSIVE'); db.execute('BEGIN EXCLUSIVE')\n"
            "print('held', flush=True); sys.stdin.read()\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        agent = spawn_agent(agent_config([], []))
        assert await agent.wait(timeout=20) == 3
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    [line] = error_lines(agent)
    assert line.startswith(f"lifeguard: database unusable: {db}: locked by another process (")
    assert line.endswith("stop the other process using it (another lifeguard with the same state_dir?) and start again")
    assert "Traceback" not in agent.log_text()


def test_the_agent_raises_its_soft_open_files_limit_towards_the_hard_one() -> None:
    """Thousands of checks in flight need thousands of sockets: a soft limit of 256 is raised."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from agent.daemon import OPEN_FILES_WANTED, _raise_open_files_limit\n"
        "_raise_open_files_limit()\n"
        "now, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)\n"
        "print(now == wanted and now > 256)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "True", out
