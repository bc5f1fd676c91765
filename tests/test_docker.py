"""DockerEngine, the container check and the restart healer against a real Docker engine.

The engine is the one ``tests.fixtures_docker`` starts for the session; containers are busybox
on the host network. Unreachable and hung engines are real sockets too: a path nobody listens
on, a socket bound but never listening, and a server that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actions.healers import HEALERS, DockerRestartHealer
from agent.dockerclient import ContainerNotFound, DockerEngine, DockerError, DockerUnavailable
from checks import CheckContext
from tests.fixtures_agent import poll
from tests.fixtures_docker import MS, SilentDocker, unique

try:
    from checks.base import CheckContext
    from checks.container import ContainerCheck, container_outcome
except ImportError:  # pragma: no cover - only while sibling check modules are being written
    import importlib
    import types

    # checks/__init__ imports every check type; load this one alone under a stand-in package.
    _stand_in = types.ModuleType("checks")
    _stand_in.__path__ = [str(Path(__file__).resolve().parent.parent / "checks")]
    sys.modules["checks"] = _stand_in
    try:
        _module = importlib.import_module("checks.container")
    finally:
        del sys.modules["checks"]
    CheckContext = sys.modules["checks.base"].CheckContext
    ContainerCheck, container_outcome = _module.ContainerCheck, _module.container_outcome

ROOT = Path(__file__).resolve().parent.parent
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")


def started_at(attrs: dict[str, Any]) -> datetime:
    # Docker gives nanoseconds with trailing zeros trimmed: cut to microseconds to compare.
    raw = attrs["State"]["StartedAt"].rstrip("Z")
    whole, _, frac = raw.partition(".")
    return datetime.fromisoformat(f"{whole}.{(frac + '000000')[:6]}")


def container_check(engine: DockerEngine | None, container: str) -> ContainerCheck:
    config = SimpleNamespace(
        name=f"check-{container}", type="container", interval=10.0, timeout=5.0,
        container=container, open_after=0, resolve_after=1, severity="high", notify=[], heal=None,
    )  # fmt: skip
    return ContainerCheck(config, CheckContext(docker=engine))


@pytest.fixture
async def dead_engine(tmp_path: Path) -> AsyncIterator[DockerEngine]:
    """An engine pointed at a socket path where nothing listens."""
    eng = DockerEngine(f"unix://{tmp_path}/nothing.sock", timeout=5.0)
    yield eng
    await eng.close()


# -- DockerEngine against the real engine ---------------------------------------------------


@pytest.mark.docker
async def test_inspect_logs_restart_round_trip(docker_engine: DockerEngine, run_container) -> None:
    """inspect returns raw attrs, logs carry timestamps, restart starts the container anew."""
    name = unique("round")
    script = "echo hello; echo wörld; trap 'exit 0' TERM; sleep 3600 & wait"
    run_container(name, ["sh", "-c", script])

    attrs = await docker_engine.inspect(name)
    assert attrs["Name"] == f"/{name}"
    assert attrs["State"]["Running"] is True
    assert docker_engine.reachable is True and docker_engine.last_error is None

    lines = await poll(lambda: docker_engine.logs(name), lambda ls: len(ls) >= 2)
    assert [TIMESTAMP.sub("", line) for line in lines] == ["hello", "wörld"]
    assert all(TIMESTAMP.match(line) for line in lines)
    assert [TIMESTAMP.sub("", line) for line in await docker_engine.logs(name, tail=1)] == ["wörld"]

    before = started_at(attrs)
    await docker_engine.restart(name, stop_timeout=5)
    after = await docker_engine.inspect(name)
    assert after["State"]["Running"] is True
    assert started_at(after) > before
    lines = await poll(lambda: docker_engine.logs(name), lambda ls: len(ls) >= 4)
    assert [TIMESTAMP.sub("", line) for line in lines].count("hello") == 2


@pytest.mark.docker
@pytest.mark.parametrize("call", ["inspect", "logs", "restart"])
async def test_missing_container_raises_container_not_found(
    docker_engine: DockerEngine, call: str
) -> None:
    """Every call on a missing container raises ContainerNotFound; the engine stays reachable."""
    name = unique("missing")
    with pytest.raises(ContainerNotFound, match=f"container '{name}' not found"):
        await getattr(docker_engine, call)(name)
    assert docker_engine.reachable is True


@pytest.mark.docker
async def test_ping_reaches_engine(docker_engine: DockerEngine) -> None:
    """A fresh engine has not tried yet; a ping marks it reachable."""
    assert docker_engine.reachable is None
    assert await docker_engine.ping() is True
    assert docker_engine.reachable is True


# -- The container check --------------------------------------------------------------------


@pytest.mark.docker
async def test_container_check_passes_for_running_container(
    docker_engine: DockerEngine, run_container
) -> None:
    """A running container without a healthcheck passes."""
    name = unique("running")
    run_container(name)

    result = await container_check(docker_engine, name).run()

    assert result.ok, result.message
    assert result.message == f"container '{name}' is running"
    assert result.details["state"]["status"] == "running"
    assert result.details["state"]["running"] is True
    assert result.details["state"]["health"] is None


@pytest.mark.docker
async def test_container_check_fails_for_exited_container(
    docker_engine: DockerEngine, run_container
) -> None:
    """An exited container fails with its exit code; its environment never reaches the result."""
    name = unique("exited")
    run_container(name, ["sh", "-c", "exit 3"], environment={"API_TOKEN": "s3cret-value"})
    await poll(lambda: docker_engine.inspect(name), lambda a: a["State"]["Status"] == "exited")

    result = await container_check(docker_engine, name).run()

    assert not result.ok
    assert result.message == f"container '{name}' is exited (exit code 3)"
    assert result.details == {
        "state": {
            "status": "exited", "running": False, "exit_code": 3, "oom_killed": False,
            "restart_count": 0, "health": None,
        }
    }  # fmt: skip
    assert "s3cret-value" not in repr(result)


@pytest.mark.docker
async def test_container_check_fails_for_missing_container(docker_engine: DockerEngine) -> None:
    """A container that does not exist fails with 'not found'."""
    name = unique("absent")

    result = await container_check(docker_engine, name).run()

    assert not result.ok
    assert result.message == f"container '{name}' not found"


@pytest.mark.docker
@pytest.mark.parametrize(
    ("test", "expected"),
    [
        (["CMD", "false"], "health probe exited with code 1"),
        (["CMD-SHELL", "echo 'database   unreachable'; exit 1"], "database unreachable"),
    ],
)
async def test_container_check_fails_for_unhealthy_container(
    docker_engine: DockerEngine, run_container, test: list[str], expected: str
) -> None:
    """A running container Docker reports unhealthy fails with the last probe's output."""
    name = unique("sick")
    run_container(
        name, healthcheck={"test": test, "interval": 100 * MS, "timeout": 1000 * MS, "retries": 1}
    )
    await poll(
        lambda: docker_engine.inspect(name),
        lambda a: (a["State"].get("Health") or {}).get("Status") == "unhealthy",
    )

    result = await container_check(docker_engine, name).run()

    assert not result.ok
    assert result.message == f"container '{name}' is unhealthy: {expected}"
    assert result.details["state"]["running"] is True
    assert result.details["state"]["health"] == "unhealthy"


# -- The rules alone (states that are slow or racy to produce for real) ---------------------


def test_restarting_container_fails() -> None:
    """A container in a restart loop fails, with its restart count in details."""
    attrs = {"RestartCount": 4, "State": {"Status": "restarting", "Running": True, "ExitCode": 1}}
    outcome = container_outcome("worker", attrs)
    assert not outcome.ok
    assert outcome.message == "container 'worker' is restarting"
    assert outcome.details["state"]["restart_count"] == 4


def test_oom_killed_container_says_so() -> None:
    """An OOM kill is named next to the exit code."""
    attrs = {"State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True}}
    outcome = container_outcome("worker", attrs)
    assert outcome.message == "container 'worker' is exited (exit code 137, OOM-killed)"


def test_paused_container_fails_although_running_flag_is_set() -> None:
    """Docker keeps Running=true while paused; the status decides."""
    outcome = container_outcome("worker", {"State": {"Status": "paused", "Running": True}})
    assert not outcome.ok
    assert outcome.message == "container 'worker' is paused"


def test_starting_health_passes_and_long_probe_output_is_trimmed() -> None:
    """Health 'starting' still passes; an unhealthy probe's output is cut to one short line."""
    starting = {"State": {"Status": "running", "Running": True, "Health": {"Status": "starting"}}}
    assert container_outcome("web", starting).ok
    noisy = {
        "State": {
            "Status": "running", "Running": True,
            "Health": {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": "x\n" * 3000}]},
        }
    }  # fmt: skip
    message = container_outcome("web", noisy).message
    assert message.startswith("container 'web' is unhealthy: x x x")
    assert message.endswith("…") and len(message) < 260


async def test_container_check_without_engine_fails() -> None:
    """A container check with no Docker engine configured fails rather than crashing."""
    result = await container_check(None, "web").run()
    assert not result.ok
    assert result.message == "no Docker engine configured"


# -- The restart healer ---------------------------------------------------------------------


@pytest.mark.docker
async def test_healer_restarts_stopped_container(docker_engine: DockerEngine, run_container) -> None:
    """The registered restart healer brings a stopped container back to running."""
    name = unique("heal")
    container = run_container(name)
    container.stop(timeout=5)
    assert (await docker_engine.inspect(name))["State"]["Status"] == "exited"

    healer = HEALERS["restart_container"](name, CheckContext(docker=docker_engine))
    assert healer.describe() == f"restart container '{name}'" and healer.container == name
    outcome = await healer.heal()

    assert outcome.ok, outcome.message
    assert outcome.message == f"restarted container '{name}'"
    assert (await docker_engine.inspect(name))["State"]["Status"] == "running"


@pytest.mark.docker
async def test_healer_reports_missing_container(docker_engine: DockerEngine) -> None:
    """Healing a container that does not exist is a failed outcome, not an exception."""
    name = unique("gone")
    outcome = await DockerRestartHealer(name, CheckContext(docker=docker_engine)).heal()
    assert not outcome.ok
    assert outcome.message == f"container '{name}' not found"


# -- Docker unreachable, hung, and back again -----------------------------------------------


async def test_unreachable_engine_fails_fast_with_clear_message(dead_engine: DockerEngine) -> None:
    """Nothing at the socket path: ping is False, calls raise DockerUnavailable naming the url."""
    t0 = time.monotonic()
    assert await dead_engine.ping() is False
    with pytest.raises(DockerUnavailable) as caught:
        await dead_engine.inspect("web")
    assert time.monotonic() - t0 < 2.0
    expected = f"Docker unreachable at {dead_engine.url}: No such file or directory"
    assert str(caught.value) == expected
    assert isinstance(caught.value, DockerError)
    assert dead_engine.reachable is False
    assert dead_engine.last_error == str(caught.value)


async def test_socket_without_listener_is_unreachable(tmp_path: Path) -> None:
    """A socket file bound but not listening refuses connections: DockerUnavailable."""
    path = tmp_path / "bound.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        eng = DockerEngine(f"unix://{path}", timeout=5.0)
        try:
            with pytest.raises(DockerUnavailable, match="Connection refused"):
                await eng.logs("web")
        finally:
            await eng.close()


async def test_container_check_and_healer_when_docker_unreachable(
    dead_engine: DockerEngine,
) -> None:
    """The check fails and the healer reports failure, both with the unreachable message."""
    expected = f"Docker unreachable at {dead_engine.url}: No such file or directory"

    result = await container_check(dead_engine, "web").run()
    outcome = await DockerRestartHealer("web", CheckContext(docker=dead_engine)).heal()

    assert not result.ok and result.message == expected
    assert not outcome.ok and outcome.message == expected


async def test_hung_engine_times_out(silent_docker: SilentDocker) -> None:
    """An engine that accepts but never answers gives DockerUnavailable within the timeout."""
    eng = DockerEngine(silent_docker.url, timeout=0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(DockerUnavailable, match=r"^Docker did not answer within 0\.5s$"):
            await eng.inspect("web")
        assert time.monotonic() - t0 < 2.0
        assert silent_docker.connected.is_set()
        assert eng.reachable is False
    finally:
        await eng.close()


@pytest.mark.docker
async def test_engine_reconnects_when_docker_appears(docker_url: str, tmp_path: Path) -> None:
    """An engine that failed on a missing socket works once Docker answers at that path."""
    link = tmp_path / "docker.sock"
    eng = DockerEngine(f"unix://{link}", timeout=5.0)
    try:
        assert await eng.ping() is False
        with pytest.raises(DockerUnavailable):
            await eng.inspect("anything")
        assert eng.reachable is False

        link.symlink_to(docker_url.removeprefix("unix://"))

        assert await eng.ping() is True
        assert eng.reachable is True and eng.last_error is None
        with pytest.raises(ContainerNotFound):
            await eng.inspect(unique("anything"))
    finally:
        await eng.close()


def test_engine_and_healers_import_without_docker_py() -> None:
    """Building an engine, a check and a healer loads no docker-py: it is imported on first call."""
    code = (
        "import sys\n"
        "from agent.dockerclient import DockerEngine\n"
        "from actions.healers import HEALERS\n"
        "import checks.container\n"
        "from checks import CheckContext\n"
        "HEALERS['restart_container']('web', CheckContext(docker=DockerEngine('unix:///nowhere.sock')))\n"
        "sys.exit(1 if 'docker' in sys.modules else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr or "docker-py was imported eagerly"


async def test_calls_behind_an_unanswered_first_one_fail_fast(silent_docker: SilentDocker) -> None:
    """While a first call waits on an engine that never answers, the others give up after 0.5 s
    with the reason instead of each waiting out its own timeout."""
    eng = DockerEngine(silent_docker.url, timeout=5.0)
    try:
        first = asyncio.create_task(eng.inspect("web"))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(DockerUnavailable, match=r"no answer yet \(still connecting\)$"):
            await eng.logs("web")
        assert time.monotonic() - t0 < 2.0
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    finally:
        await eng.close()
