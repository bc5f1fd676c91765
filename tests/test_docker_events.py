"""Docker's events against a real engine: a container killed, stopped, OOM-killed or turned
unhealthy makes its check run at once (every check here runs every hour, so its schedule cannot
explain a second run), the events land in the incident's evidence, and the stream survives the
engine restarting. The parts are the agent's own: a real SQLite store, the engine, the scheduler,
``DockerEvents`` reading the engine's socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.docker_events import DockerEvents, event_record, watched_containers, watched_key
from agent.dockerclient import DockerEngine
from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.scheduler import Scheduler
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.container import ContainerCheckConfig
from tests.fixtures_agent import SECRET, agent_config, wait_until
from tests.fixtures_docker import MS, SLEEP_FOREVER, TEST_IMAGE, TEST_LABEL, unique

pytestmark = pytest.mark.docker

RESULT_WAIT = 20.0  # seconds an awaited result may take on a loaded machine (never a speed claim)


# -- pure parts ------------------------------------------------------------------------------
def test_an_event_is_recorded_as_at_action_exit_code_oom() -> None:
    event = {"Type": "container", "Action": "die", "timeNano": 1_800_000_000_123_000_000,
             "Actor": {"ID": "ab" * 32, "Attributes": {"name": "api", "exitCode": "137"}}}
    assert event_record(event) == {"at": "2027-01-15T08:00:00.123Z", "action": "die", "exit_code": 137, "oom": False}
    assert event_record({"Action": "oom", "time": 1_800_000_000})["oom"] is True


def test_an_event_is_matched_by_name_id_or_id_prefix() -> None:
    event = {"Actor": {"ID": "0123456789ab" + "c" * 52, "Attributes": {"name": "api"}}}
    assert watched_key(event, {"api": ["web"]}) == "api"
    assert watched_key(event, {"0123456789ab": ["web"]}) == "0123456789ab"
    assert watched_key(event, {"0123": ["web"]}) is None  # too short a prefix to be an id
    assert watched_key(event, {"db": ["db"]}) is None


def test_a_replayed_event_is_handled_once_and_events_of_one_nanosecond_all_count() -> None:
    asked: list[str] = []
    events = DockerEvents(DockerEngine("unix:///nowhere"), lambda: {"api": ["web"]}, asked.append,
                          lambda name, coro: asyncio.ensure_future(coro))

    def event(action: str, nano: int) -> dict[str, Any]:
        return {"Action": action, "timeNano": nano, "Actor": {"ID": "c1", "Attributes": {"name": "api"}}}

    for e in (event("start", 5), event("restart", 5), event("start", 5), event("die", 4), event("die", 6)):
        events.handle(e)
    assert [e["action"] for e in events.recent("api")] == ["start", "restart", "die"]
    assert asked == ["web"] * 3


# -- the harness ----------------------------------------------------------------------------
@dataclass
class Agent:
    """Engine, scheduler and event reader wired as the daemon wires them."""

    store: Store
    engine: Engine
    scheduler: Scheduler
    events: DockerEvents
    results: dict[str, asyncio.Queue[CheckResult]] = field(default_factory=dict)

    async def next_result(self, check: str, ok: bool | None = None) -> CheckResult:
        """The next result of ``check`` (the next one with ``ok``, if given)."""
        async with asyncio.timeout(RESULT_WAIT):
            while True:
                result = await self.results[check].get()
                if ok is None or result.ok == ok:
                    return result

    async def incident(self, check: str) -> dict[str, Any]:
        [row] = [i for i in await self.store.run(self.store.incidents.list, None, 10) if i["check"] == check]
        await self.engine.evidence_ready(row["id"], "opened")
        found = await self.store.run(self.store.incidents.get, row["id"])
        assert found is not None
        return found


def container_check(name: str, container: str) -> ContainerCheckConfig:
    return ContainerCheckConfig.model_validate(dict(name=name, type="container", container=container, interval="1h", timeout="5s",
                                open_after="0s", resolve_after=1, notify=[]))


@contextlib.asynccontextmanager
async def running_agent(store: Store, tmp_path: Path, url: str, checks: dict[str, str]) -> AsyncIterator[Agent]:
    docker = DockerEngine(url, timeout=5.0)
    context = CheckContext(docker=docker)
    built = [build_check(container_check(name, container), context) for name, container in checks.items()]
    evidence = EvidenceCollector(docker, tmp_path, time_bound=2.0)
    engine = Engine(store, built, clients=context, evidence=evidence, notify_all=[])
    results: dict[str, asyncio.Queue[CheckResult]] = {name: asyncio.Queue() for name in checks}

    async def on_result(result: CheckResult) -> None:
        await engine.on_result(result)
        results[result.check].put_nowait(result)

    scheduler = Scheduler(built, on_result, jitter=False)
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(name: str, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        tasks.add(task)
        return task

    events = DockerEvents(docker, lambda: watched_containers(engine.tracked), scheduler.run_now, spawn)
    evidence.docker_events = events.recent
    await engine.restore()
    agent = Agent(store, engine, scheduler, events, results)
    scheduler.start(spawn)
    try:
        for name in checks:
            await agent.next_result(name)  # the first, planned run; the next is an hour away
        await events.start()
        async with asyncio.timeout(RESULT_WAIT):
            await events.connected.wait()
        yield agent
    finally:
        await events.stop(1)
        await scheduler.stop()
        await engine.drain(5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await docker.close()
        evidence.close()


# -- what makes a check run at once --------------------------------------------------------------
async def test_a_killed_container_is_seen_at_once_and_its_events_go_into_the_evidence(
    running_store: Store, tmp_path: Path, docker_url: str, run_container: Any
) -> None:
    name = unique("ev-kill")
    container = run_container(name)
    async with running_agent(running_store, tmp_path, docker_url, {"app": name}) as agent:
        await asyncio.to_thread(container.kill)
        failing = await agent.next_result("app", ok=False)
        assert "exited (exit code 137" in failing.message
        incident = await agent.incident("app")
        bundle = (await running_store.run(running_store.evidence.get, incident["id"]))["opened"]
        seen = bundle["container"]["docker_events"]
        assert {"kill", "die"} <= {e["action"] for e in seen}
        assert [e["exit_code"] for e in seen if e["action"] == "die"] == [137]
        assert all(set(e) == {"at", "action", "exit_code", "oom"} for e in seen)
        assert not any(e["action"].startswith("exec_") for e in seen)


async def test_a_stopped_container_is_seen_at_once(
    running_store: Store, tmp_path: Path, docker_url: str, run_container: Any
) -> None:
    name = unique("ev-stop")
    container = run_container(name)
    async with running_agent(running_store, tmp_path, docker_url, {"app": name}) as agent:
        await asyncio.to_thread(container.stop, timeout=5)
        failing = await agent.next_result("app", ok=False)
        assert "exited" in failing.message
        # The engine says "stop" once the container is down, after its "die" (which ran the check).
        await wait_until(lambda: "stop" in [e["action"] for e in agent.events.recent(name)], RESULT_WAIT, "stop")


async def test_a_container_turning_unhealthy_is_seen_at_once(
    running_store: Store, tmp_path: Path, docker_url: str, run_container: Any, docker_client: Any
) -> None:
    name = unique("ev-health")
    health = {"test": ["CMD", "sh", "-c", "test ! -e /tmp/bad"], "interval": 200 * MS, "timeout": 2000 * MS,
              "retries": 1}
    container = run_container(name, healthcheck=health)
    async with running_agent(running_store, tmp_path, docker_url, {"app": name}) as agent:
        await asyncio.to_thread(container.exec_run, ["touch", "/tmp/bad"])
        failing = await agent.next_result("app", ok=False)
        assert "is unhealthy" in failing.message
        actions = [e["action"] for e in agent.events.recent(name)]
        assert "health_status: unhealthy" in actions
        assert not any(a.startswith("exec_") for a in actions)  # the probes' noise is filtered by the engine


async def test_an_oom_killed_container_is_seen_at_once(
    running_store: Store, tmp_path: Path, docker_url: str, run_container: Any, docker_client: Any
) -> None:
    info = await asyncio.to_thread(docker_client.info)
    if not info.get("MemoryLimit"):
        pytest.skip("this kernel does not let the engine limit a container's memory (docker info: MemoryLimit false)")
    name = unique("ev-oom")
    eat = "while [ ! -e /tmp/go ]; do sleep 0.05; done; tail /dev/zero"
    container = run_container(name, ["sh", "-c", eat], mem_limit="16m", memswap_limit="16m")
    async with running_agent(running_store, tmp_path, docker_url, {"app": name}) as agent:
        await asyncio.to_thread(container.exec_run, ["touch", "/tmp/go"])
        failing = await agent.next_result("app", ok=False)
        state = (await asyncio.to_thread(docker_client.api.inspect_container, name))["State"]
        if not state["OOMKilled"]:
            pytest.skip(f"the kernel did not OOM-kill the container under a 16 MB limit (state: {state['Status']})")
        assert "OOM-killed" in failing.message
        recent = agent.events.recent(name)
        assert any(e["oom"] for e in recent) and "die" in [e["action"] for e in recent]


# -- the stream breaks and resumes ------------------------------------------------------------------
@pytest.fixture
def private_engine() -> Iterator[Any]:
    """A dockerd only this test uses (the session's keeps running for the others)."""
    import os
    import shutil
    import tempfile

    from tests import fixtures_docker as fd

    if os.geteuid() != 0:
        fd._unavailable("the tests are not running as root, and dockerd needs root")
    root = Path(tempfile.mkdtemp(prefix="lg-dev-", dir="/tmp"))
    engine = fd.Engine(root)
    try:
        engine.start()
        client = engine.client()
        try:
            fd._import_test_image(client)
        finally:
            client.close()
        yield engine
    finally:
        engine.stop(remove_containers=True)
        fd._unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


async def test_the_stream_resumes_after_the_engine_restarts(running_store: Store, tmp_path: Path,
                                                             private_engine: Any) -> None:
    engine = private_engine
    name = unique("ev-resume")
    client = engine.client()
    try:
        container = await asyncio.to_thread(
            lambda: client.containers.run(TEST_IMAGE, SLEEP_FOREVER, name=name, detach=True, network_mode="host",
                                          labels={TEST_LABEL: "1"}, restart_policy={"Name": "always"}))
    finally:
        client.close()
    async with running_agent(running_store, tmp_path, engine.url, {"app": name}) as agent:
        assert agent.events.streams_opened == 1
        await asyncio.to_thread(engine.stop)
        await wait_until(lambda: not agent.events.connected.is_set(), RESULT_WAIT, "the stream to break")
        await asyncio.to_thread(engine.start)
        await wait_until(lambda: agent.events.connected.is_set(), 30, "the stream to resume")
        assert agent.events.streams_opened == 2
        # Resumed, every watched check runs once (events of the gap may be lost)...
        await agent.next_result("app", ok=True)
        # ...and the resumed stream sees a stop at once.
        client = engine.client()
        try:
            await asyncio.to_thread(lambda: client.containers.get(container.id).stop(timeout=5))
        finally:
            client.close()
        failing = await agent.next_result("app", ok=False)
        assert "exited" in failing.message


# -- the agent itself -------------------------------------------------------------------------------
async def test_a_running_agent_opens_the_incident_of_a_killed_container_long_before_its_next_run(
    docker_url: str, run_container: Any, receiver: Any, spawn_agent: Any
) -> None:
    name = unique("ev-agent")
    container = run_container(name)
    cfg = agent_config(
        [{"name": "app", "type": "container", "container": name, "interval": "1h", "timeout": "5s"}],
        [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": SECRET}],
    )
    cfg["docker"] = {"url": docker_url, "timeout": "5s"}
    agent = spawn_agent(cfg)
    await agent.ready()
    await wait_until(lambda: '"docker.events_open"' in agent.log_text(), RESULT_WAIT, "the event stream")
    await wait_until(lambda: '"check.completed"' in agent.log_text(), RESULT_WAIT, "the first run")
    await asyncio.to_thread(container.kill)
    [opened] = await wait_until(lambda: receiver.of("incident.opened"), RESULT_WAIT, "incident.opened")
    assert "exited (exit code 137" in opened["incident"]["title"]
    status, evidence = await agent.api(f"/api/incidents/{opened['incident']['id']}/evidence")
    assert status == 200
    assert "die" in [e["action"] for e in evidence["opened"]["container"]["docker_events"]]
