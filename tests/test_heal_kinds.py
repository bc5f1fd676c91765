"""The heal kinds beside the container restart: ``run``, ``restart_service`` and ``stop_container``.

Their config (one kind per ``heal:``, located errors), the healers against real subprocesses (a
command of the test's own, a ``systemctl`` script on ``PATH`` that records its arguments), and
the engine recording what they do against a real SQLite file with an injected clock. The agent
as a whole, real containers and a real systemd are in ``tests/test_e2e_heal_kinds.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path

import pytest

from actions.healers import HEALERS, OUTPUT_LIMIT, RestartServiceHealer, RunHealer, StopContainerHealer, kept_output
from actions.healers.process import run_bounded
from agent.config import ConfigError, load_config
from agent.dockerclient import DockerEngine
from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.plugins import needs
from agent.redact import REDACTED
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.tcp import TcpCheckConfig
from tests.fixtures_agent import wait_until
from tests.fixtures_docker import unique

# -- helpers ------------------------------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    """An executable shell script of the test's own (the healer itself runs no shell)."""
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, the file was read
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def end(pid: int) -> None:
    """Clean up a process the test started (by its pid)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def load(tmp_path: Path, heal: str, check: str = "{name: a, type: tcp, host: h, port: 1, container: app"):
    (tmp_path / "config.yaml").write_text(f"checks: [{check}, heal: {heal}}}]\n")
    return load_config(tmp_path / "config.yaml", {})


def errors(tmp_path: Path, heal: str, check: str = "{name: a, type: tcp, host: h, port: 1") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, heal, check)
    return caught.value.errors


# -- config -------------------------------------------------------------------------------------


def test_each_kind_is_written_as_its_key_with_its_target(tmp_path: Path) -> None:
    run = load(tmp_path, "{run: [/opt/fix, --queue, 'a b'], timeout: 5s}").checks[0].heal
    assert run.model_dump() == {
        "kind": "run", "target": "/opt/fix --queue 'a b'", "max_restarts": 3, "within": 900.0, "cooldown": 30.0,
        "timeout": 5.0,
    }  # fmt: skip
    service = load(tmp_path, "{restart_service: nginx, max_restarts: 1}").checks[0].heal
    assert (service.kind, service.target, service.timeout) == ("restart_service", "nginx.service", 30.0)
    assert load(tmp_path, "{restart_service: app.socket}").checks[0].heal.target == "app.socket"
    stop = load(tmp_path, "{stop_container: }").checks[0].heal  # no value: the check's container
    assert stop.model_dump() == {
        "kind": "stop_container", "target": "app", "max_restarts": 3, "within": 900.0, "cooldown": 30.0,
    }  # fmt: skip
    assert load(tmp_path, "{stop_container: worker}").checks[0].heal.target == "worker"


def test_the_run_timeout_defaults_to_30s_cut_to_a_shorter_cooldown(tmp_path: Path) -> None:
    assert load(tmp_path, "{run: [/opt/fix]}").checks[0].heal.timeout == 30.0
    assert load(tmp_path, "{run: [/opt/fix], cooldown: 10s}").checks[0].heal.timeout == 10.0


@pytest.mark.parametrize(
    ("heal", "expected"),
    [
        ("{}", "checks[0].heal.restart_container: required (the check has no container to default to)"),
        ("{run: [/opt/fix], stop_container: web}", "checks[0].heal.stop_container: one heal kind per check (also run)"),
        ("{restart_service: a, restart_container: b}",
         "checks[0].heal.restart_container: one heal kind per check (also restart_service)"),
        ("{run: /opt/fix --now}", "checks[0].heal.run: expected a list: the command and its arguments,"
                                  " e.g. [/usr/local/bin/fix, --now] (no shell runs it)"),
        ("{run: []}", "checks[0].heal.run: expected a list of at least one string: the command and its arguments"),
        ("{run: [/opt/fix, 3]}", "checks[0].heal.run: item 1 is not a string (quote it)"),
        ("{run: ['  ']}", "checks[0].heal.run: the command (item 0) must not be empty"),
        ("{run: }", "checks[0].heal.run: required"),
        ("{run: [/opt/fix], timeout: 0s}", "checks[0].heal.timeout: must be longer than 0s"),
        ("{run: [/opt/fix], timeout: 2m}", "checks[0].heal.timeout: 2m is longer than the cooldown 30s (a heal still"
                                           " running when the cooldown ends would be judged failed and made again)"),
        ("{stop_container: web, timeout: 5s}",
         "checks[0].heal.timeout: only restart_service and run heals take a timeout, not stop_container"),
        ("{restart_service: -x}", "checks[0].heal.restart_service: not a systemd unit name: '-x' (e.g. nginx or nginx.service)"),
        ("{restart_service: 'a b'}",
         "checks[0].heal.restart_service: not a systemd unit name: 'a b' (e.g. nginx or nginx.service)"),
        ("{restart_service: getty@.service}", "checks[0].heal.restart_service: 'getty@.service' is a template, not a"
                                              " unit: name an instance (e.g. getty@tty1.service)"),
        ("{restart_service: ''}", "checks[0].heal.restart_service: must not be empty"),
        ("{restart_service: [a]}", "checks[0].heal.restart_service: expected a string"),
        ("{stop_container: }", "checks[0].heal.stop_container: required (the check has no container to default to)"),
    ],
)  # fmt: skip
def test_a_wrong_heal_is_a_located_error(tmp_path: Path, heal: str, expected: str) -> None:
    assert errors(tmp_path, heal) == [expected]


def test_a_misspelt_kind_is_named_with_the_kind_meant(tmp_path: Path) -> None:
    container = "{name: a, type: tcp, host: h, port: 1, container: app"
    assert errors(tmp_path, "{stop_containr: web}", container) == [
        "checks[0].heal.stop_containr: unknown key (did you mean 'stop_container'?)"
    ]


def test_only_the_container_kinds_need_docker(tmp_path: Path) -> None:
    """A config whose heals run commands or restart units starts no Docker client."""
    assert needs(load(tmp_path, "{run: [/opt/fix]}", "{name: a, type: tcp, host: h, port: 1")) == frozenset()
    assert needs(load(tmp_path, "{restart_service: nginx}", "{name: a, type: tcp, host: h, port: 1")) == frozenset()
    assert needs(load(tmp_path, "{stop_container: web}", "{name: a, type: tcp, host: h, port: 1")) == {"docker"}


# -- run: a real command ---------------------------------------------------------------------


async def test_run_heals_when_the_command_exits_0_and_hands_over_its_output(tmp_path: Path) -> None:
    fix = script(tmp_path / "fix", 'echo "flushing $1"; echo "warning: slow" >&2; touch "$2"\n')
    healer = HEALERS["run"](f"{fix} queue {tmp_path / 'done'}", CheckContext(), timeout=10.0)
    assert healer.describe() == f"run command '{fix} queue {tmp_path / 'done'}'" and healer.container is None
    outcome = await healer.heal()
    assert (outcome.ok, outcome.message) == (True, "exited with status 0")
    assert outcome.output == "flushing queue\nwarning: slow\n" and (tmp_path / "done").exists()


async def test_run_passes_each_argument_as_written_without_a_shell(tmp_path: Path) -> None:
    show = script(tmp_path / "show", 'for a in "$@"; do echo "<$a>"; done\n')
    argv = [str(show), "two words", "$HOME", "; rm -rf /", "*"]
    target = RunHealer.target_of(argv)
    outcome = await RunHealer(target, CheckContext(), timeout=10.0).heal()
    assert outcome.output == "<two words>\n<$HOME>\n<; rm -rf />\n<*>\n"


async def test_a_nonzero_status_or_a_signal_fails_the_heal(tmp_path: Path) -> None:
    failing = script(tmp_path / "failing", "echo 'queue locked'; exit 3\n")
    outcome = await RunHealer(str(failing), CheckContext(), timeout=10.0).heal()
    assert (outcome.ok, outcome.message, outcome.output) == (False, "exited with status 3", "queue locked\n")
    killed = script(tmp_path / "killed", "kill -USR1 $$\n")
    outcome = await RunHealer(str(killed), CheckContext(), timeout=10.0).heal()
    assert (outcome.ok, outcome.message) == (False, "killed by SIGUSR1")


async def test_a_program_that_cannot_run_fails_the_heal_with_the_reason(tmp_path: Path) -> None:
    outcome = await RunHealer(str(tmp_path / "missing"), CheckContext(), timeout=10.0).heal()
    assert (outcome.ok, outcome.message) == (False, f"cannot run '{tmp_path / 'missing'}': No such file or directory")
    (tmp_path / "plain").write_text("echo hi\n")  # not executable
    outcome = await RunHealer(str(tmp_path / "plain"), CheckContext(), timeout=10.0).heal()
    assert (outcome.ok, outcome.message) == (False, f"cannot run '{tmp_path / 'plain'}': Permission denied")


async def test_at_the_timeout_the_whole_process_group_is_killed(tmp_path: Path) -> None:
    """The command and what it started, even one ignoring SIGTERM, are gone when the heal returns."""
    pids = tmp_path / "pids"
    hang = script(tmp_path / "hang", f"""\
        sh -c 'trap "" TERM; echo $$ >> {pids}; while :; do sleep 1; done' &
        echo $$ >> {pids}
        echo started
        while :; do sleep 1; done
    """)
    outcome = await RunHealer(str(hang), CheckContext(), timeout=3.0).heal()
    started = [int(p) for p in pids.read_text().split()]
    try:
        assert len(started) == 2, started
        assert (outcome.ok, outcome.message) == (False, "timed out after 3s: its process group was killed")
        assert outcome.output == "started\n"
        # SIGKILL is sent before the heal returns; the kernel ends a process a moment later.
        await wait_until(lambda: not [pid for pid in started if alive(pid)], 10, "the whole group to be gone")
    finally:
        for pid in started:
            end(pid)


async def test_a_cancelled_heal_kills_the_group(tmp_path: Path) -> None:
    """The agent stopping mid-heal leaves no command behind."""
    pids = tmp_path / "pids"
    hang = script(tmp_path / "hang", f"echo $$ >> {pids}\nwhile :; do sleep 1; done\n")
    task = asyncio.create_task(RunHealer(str(hang), CheckContext(), timeout=60.0).heal())
    await wait_until(lambda: pids.exists() and pids.read_text().strip(), 10, "the command to start")
    pid = int(pids.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        await wait_until(lambda: not alive(pid), 10, "the cancelled command to be gone")
    finally:
        end(pid)


async def test_a_process_the_command_leaves_running_is_neither_waited_for_nor_killed(tmp_path: Path) -> None:
    """A heal that starts a daemon (which keeps the output pipe open) ends when the command does."""
    pid_file = tmp_path / "daemon.pid"
    starter = script(tmp_path / "starter", f"sleep 300 &\necho $! > {pid_file}\necho started\n")
    outcome = await RunHealer(str(starter), CheckContext(), timeout=30.0).heal()
    daemon = int(pid_file.read_text())
    try:
        assert (outcome.ok, outcome.output) == (True, "started\n")
        assert alive(daemon)
    finally:
        end(daemon)


async def test_only_the_start_of_a_long_output_is_kept_and_all_of_it_counted(tmp_path: Path) -> None:
    chatty = script(tmp_path / "chatty", "head -c 1000000 /dev/zero | tr '\\0' x\n")
    done = await run_bounded([str(chatty)], 30.0)
    assert done.returncode == 0 and done.output_bytes == 1_000_000
    assert done.output == b"x" * 8192
    kept = kept_output(done.text, done.output_bytes)
    assert kept == "x" * OUTPUT_LIMIT + f"\n[… 1000000 bytes in all, the first {OUTPUT_LIMIT} kept]"


def test_output_is_masked_before_it_is_cut() -> None:
    """A secret straddling the limit is masked whole, not cut into a leaking prefix."""
    secret = "tok_" + "9" * 40
    text = "a" * (OUTPUT_LIMIT - 10) + secret + "tail"
    kept = kept_output(text, len(text), lambda s: s.replace(secret, REDACTED))
    assert "tok_" not in kept and "999" not in kept
    assert kept.startswith("a" * (OUTPUT_LIMIT - 10) + REDACTED[:10])
    assert kept_output("short\n") == "short\n"
    assert kept_output("\ufffd binary\n") == "\ufffd binary\n"  # not cut: nothing more was written


# -- restart_service: a systemctl of the test's own on PATH ---------------------------------------


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``systemctl`` first on PATH: records its arguments (one per line, a blank line after
    each call), then does what ``systemctl.do`` says, if anything."""
    folder = tmp_path / "bin"
    folder.mkdir()
    calls, do = tmp_path / "systemctl.calls", tmp_path / "systemctl.do"
    do.write_text("exit 0\n")
    script(folder / "systemctl", f'for a in "$@"; do echo "$a" >> {calls}; done\necho >> {calls}\n. {do}\n')
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path


def calls(folder: Path) -> list[list[str]]:
    text = (folder / "systemctl.calls").read_text() if (folder / "systemctl.calls").exists() else ""
    return [call.split("\n") for call in text.strip("\n").split("\n\n") if call]


async def test_restart_service_runs_systemctl_restart_and_waits_for_it(systemctl: Path) -> None:
    healer = HEALERS["restart_service"]("nginx.service", CheckContext(), timeout=10.0)
    assert healer.describe() == "restart unit 'nginx.service'"
    outcome = await healer.heal()
    assert (outcome.ok, outcome.message, outcome.output) == (True, "restarted unit 'nginx.service'", None)
    assert calls(systemctl) == [["--no-ask-password", "restart", "nginx.service"]]


async def test_a_failed_restart_says_what_systemctl_said(systemctl: Path) -> None:
    (systemctl / "systemctl.do").write_text(
        "echo 'Job for nginx.service failed because the control process exited with error code.' >&2\n"
        "echo 'See \"systemctl status nginx.service\" for details.' >&2\nexit 1\n"
    )
    outcome = await RestartServiceHealer("nginx.service", CheckContext(), timeout=10.0).heal()
    assert (outcome.ok, outcome.message) == (
        False,
        "systemctl exited with status 1: Job for nginx.service failed because the control process exited with"
        ' error code. See "systemctl status nginx.service" for details.',
    )


async def test_a_restart_that_hangs_is_bounded(systemctl: Path) -> None:
    (systemctl / "systemctl.do").write_text("sleep 60\n")
    outcome = await RestartServiceHealer("slow.service", CheckContext(), timeout=0.3).heal()
    assert (outcome.ok, outcome.message) == (False, "systemctl did not finish within 300ms")


async def test_without_systemctl_on_path_the_heal_fails_saying_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    outcome = await RestartServiceHealer("nginx.service", CheckContext(), timeout=10.0).heal()
    assert (outcome.ok, outcome.message) == (
        False, "systemctl not found on PATH (restart_service needs a host run by systemd)"
    )  # fmt: skip


# -- stop_container: a real container ------------------------------------------------------------


@pytest.mark.docker
async def test_stop_container_stops_it_and_a_stopped_one_stays_stopped(docker_engine: DockerEngine, run_container) -> None:
    name = unique("stop")
    run_container(name, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    healer = HEALERS["stop_container"](name, CheckContext(docker=docker_engine))
    assert healer.describe() == f"stop container '{name}'" and healer.container == name
    outcome = await healer.heal()
    assert (outcome.ok, outcome.message) == (True, f"stopped container '{name}'")
    assert (await docker_engine.inspect(name))["State"]["Status"] == "exited"
    again = await healer.heal()
    assert (again.ok, (await docker_engine.inspect(name))["State"]["Status"]) == (True, "exited")


@pytest.mark.docker
async def test_stopping_a_missing_container_or_without_docker_fails_saying_why(docker_engine: DockerEngine) -> None:
    name = unique("gone")
    outcome = await StopContainerHealer(name, CheckContext(docker=docker_engine)).heal()
    assert (outcome.ok, outcome.message) == (False, f"container '{name}' not found")
    outcome = await StopContainerHealer(name, CheckContext()).heal()
    assert (outcome.ok, outcome.message) == (False, "no Docker engine configured")


# -- the engine: real commands, a real SQLite file, an injected clock -------------------------


def run_engine(store: Store, tmp_path: Path, clock, argv: list[str], **heal) -> Engine:
    cfg = TcpCheckConfig.model_validate(dict(
        name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=1, notify=["ops"],
        heal={"run": argv, "max_restarts": 2, "within": "15m", "cooldown": "10s", "timeout": "10s", **heal},
    ))  # fmt: skip
    return Engine(store, [build_check(cfg, CheckContext())], clients=CheckContext(), secrets=["s3cr3t-Value-42"],
                  evidence=EvidenceCollector(None, tmp_path), notify_all=["ops"], clock=clock)  # fmt: skip


async def feed(engine: Engine, now: dict, ok: bool, at: float) -> None:
    now["t"] = at
    await engine.on_result(CheckResult("db", ok, at, 0.001, "ok" if ok else "connection refused"))
    await engine.drain(30)  # the heal (a real process) and the evidence it spawned


async def incident(store: Store) -> dict:
    [summary] = await store.run(store.incidents.list, None, 1)
    found = await store.run(store.incidents.get, summary["id"])
    assert found is not None
    return found


def entries(found: dict) -> list[tuple[str, str]]:
    return [(t["kind"], t["message"]) for t in found["timeline"] if t["kind"] != "notified"]


async def test_a_command_that_exits_0_but_fixes_nothing_is_judged_failed_after_the_cooldown(
    running_store: Store, tmp_path: Path
) -> None:
    """Exit status 0 is not success: only the check passing again is. Its output is on the timeline."""
    noop = script(tmp_path / "noop", "echo 'restarted the worker'\n")
    now = {"t": 1000.0}
    engine = run_engine(running_store, tmp_path, lambda: now["t"], [str(noop)])
    await engine.restore()
    await feed(engine, now, False, 1000.0)
    await feed(engine, now, False, 1005.0)  # within the cooldown
    await feed(engine, now, False, 1011.0)  # cooldown over: judged, and the second attempt
    await feed(engine, now, False, 1022.0)  # judged again; the budget (2) is spent
    assert entries(await incident(running_store)) == [
        ("opened", "connection refused"),
        ("heal_attempted", f"running command '{noop}'"),
        ("heal_output", "restarted the worker\n"),
        ("heal_failed", "check still failing when the cooldown ended"),
        ("heal_attempted", f"running command '{noop}'"),
        ("heal_output", "restarted the worker\n"),
        ("heal_failed", "check still failing when the cooldown ended"),
        ("heal_exhausted", f"run budget spent for command '{noop}': 2 of 2 attempts used within 15m"),
    ]
    events = [r["event"] for r in await running_store.run(running_store.outbox.rows)]
    assert events == ["incident.opened", "incident.heal_attempted", "incident.heal_failed",
                      "incident.heal_attempted", "incident.heal_failed", "incident.escalated"]  # fmt: skip
    assert await running_store.run(running_store.heals.since, 0) == [
        (("run", str(noop)), 1000.0), (("run", str(noop)), 1011.0)
    ]  # fmt: skip


async def test_a_fixing_command_succeeds_with_the_next_pass(running_store: Store, tmp_path: Path) -> None:
    fix = script(tmp_path / "fix", "echo fixed\n")
    now = {"t": 1000.0}
    engine = run_engine(running_store, tmp_path, lambda: now["t"], [str(fix), "--now"])
    await engine.restore()
    await feed(engine, now, False, 1000.0)
    await feed(engine, now, True, 1001.0)
    found = entries(await incident(running_store))
    assert [k for k, _ in found] == ["opened", "heal_attempted", "heal_output", "heal_succeeded", "resolved"]
    assert found[3] == ("heal_succeeded", "check passed again after the command")
    assert engine.tally.heals == {("run", f"{fix} --now", True): 1}


async def test_long_output_is_cut_and_secrets_masked_on_the_timeline_and_in_the_evidence(
    running_store: Store, tmp_path: Path
) -> None:
    chatty = script(tmp_path / "chatty", """\
        echo 'token s3cr3t-Value-42 rejected' >&2
        head -c 10000 /dev/zero | tr '\\0' x
        exit 4
    """)
    now = {"t": 1000.0}
    engine = run_engine(running_store, tmp_path, lambda: now["t"], [str(chatty)])
    await engine.restore()
    await feed(engine, now, False, 1000.0)
    found = await incident(running_store)
    [(_, output)] = [e for e in entries(found) if e[0] == "heal_output"]
    head = f"token {REDACTED} rejected\n"
    written = len("token s3cr3t-Value-42 rejected\n") + 10000  # counted as the command wrote it
    assert output == (head + "x" * 10000).encode()[:OUTPUT_LIMIT].decode() + (
        f"\n[… {written} bytes in all, the first {OUTPUT_LIMIT} kept]"
    )  # fmt: skip
    assert ("heal_failed", f"run of '{chatty}' failed: exited with status 4") in entries(found)
    evidence = await running_store.run(running_store.evidence.get, found["id"])
    [heal] = evidence["opened"]["heals"]
    assert heal["kind"] == "run" and heal["target"] == str(chatty) and heal["ok"] is False
    assert heal["message"] == "exited with status 4" and heal["output"] == output
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("lifeguard.db*"))  # the WAL too
    assert b"s3cr3t" not in stored and b"rejected" in stored


async def test_a_configured_secret_in_the_command_line_is_masked_on_the_timeline(
    running_store: Store, tmp_path: Path
) -> None:
    login = script(tmp_path / "login", "exit 1\n")
    now = {"t": 1000.0}
    engine = run_engine(running_store, tmp_path, lambda: now["t"], [str(login), "--password", "s3cr3t-Value-42"])
    await engine.restore()
    await feed(engine, now, False, 1000.0)
    assert entries(await incident(running_store))[1:] == [
        ("heal_attempted", f"running command '{login} --password {REDACTED}'"),
        ("heal_output", "(no output)"),
        ("heal_failed", f"run of '{login} --password {REDACTED}' failed: exited with status 1"),
    ]
