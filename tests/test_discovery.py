"""Checks from container labels: the pure translation, and the agent against the suite's dockerd."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import load_config
from agent.discovery import Labelled, checks_from_labels, own_container_ids
from tests.fixtures_agent import AgentProcess, agent_config, free_port, poll, wait_until
from tests.fixtures_docker import SLEEP_FOREVER, TEST_IMAGE, TEST_LABEL, unique


def labelled(name: str, **labels: str) -> Labelled:
    return Labelled(f"{name}-id", name, tuple(sorted(labels.items())))


def config_with(tmp_path: Path, checks: list[dict[str, Any]]) -> Any:
    cfg = agent_config(checks, [{"name": "ops", "type": "file", "path": "events.jsonl"}])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(tmp_path / "config.yaml")


def test_labels_become_a_check_validated_like_the_config(tmp_path: Path) -> None:
    config = config_with(tmp_path, [{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": 5432}])
    web = labelled("proj-web-1", **{"lifeguard.check.type": "http", "lifeguard.check.port": "8080",
                                    "lifeguard.check.interval": "5s", "lifeguard.severity": "critical",
                                    "com.docker.compose.service": "web"})
    bad = labelled("bad-1", **{"lifeguard.check.type": "tcp", "lifeguard.check.port": "70000"})
    clash = labelled("db-1", **{"lifeguard.check.type": "container", "com.docker.compose.service": "db"})
    found, warnings = checks_from_labels([web, bad, clash], config, allow_heal=False)
    assert [c.name for c in found] == ["web"]
    check = found[0]
    assert (check.url, check.interval, check.severity, check.container) == (
        "http://web:8080/", 5.0, "critical", "proj-web-1")
    assert check.notify == ["ops"] and check.heal is None
    said = {(c.name, label) for c, label, _ in warnings}
    assert ("bad-1", "lifeguard.check.port") in said  # located: the container and its label
    assert ("db-1", "com.docker.compose.service") in said  # the config's check wins


def test_a_label_heal_needs_allow_heal(tmp_path: Path) -> None:
    config = config_with(tmp_path, [])
    app = labelled("app", **{"lifeguard.check.type": "container", "lifeguard.heal": "restart"})
    found, warnings = checks_from_labels([app], config, allow_heal=False)
    assert found[0].heal is None and [label for _, label, _ in warnings] == ["lifeguard.heal"]
    found, warnings = checks_from_labels([app], config, allow_heal=True)
    assert found[0].heal is not None and found[0].heal.target == "app" and not warnings


def test_own_container_id_comes_from_the_hostname_mount(tmp_path: Path) -> None:
    cid = "a" * 64
    (tmp_path / "cgroup").write_text("0::/\n")
    (tmp_path / "mountinfo").write_text(
        f"1 2 0:1 /var/lib/docker/containers/{'b' * 64}/mounts/shm /dev/shm rw\n"
        f"3 2 8:1 /var/lib/docker/containers/{cid}/hostname /etc/hostname rw\n"
    )
    assert own_container_ids(tmp_path)[0] == cid
    assert "b" * 64 not in own_container_ids(tmp_path)


@pytest.fixture
def labelled_container(docker_client: Any) -> Any:
    made: list[Any] = []

    def run(name: str, labels: dict[str, str]) -> Any:
        container = docker_client.containers.run(
            TEST_IMAGE, SLEEP_FOREVER, name=name, detach=True, network_mode="host",
            labels={TEST_LABEL: "1", **labels},
        )
        made.append(container)
        return container

    yield run
    import docker

    for container in made:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


async def checks(agent: AgentProcess) -> dict[str, dict[str, Any]]:
    _, body = await agent.api("/api/checks")
    return {c["name"]: c for c in body["checks"]}


async def test_discovery_follows_labelled_containers_of_its_project(
    docker_url: str, labelled_container: Any, spawn_agent: Any
) -> None:
    project, other = unique("proj"), unique("other")
    cfg = agent_config([], [])
    cfg["docker"] = {"url": docker_url, "discover": {"enabled": True, "project": project, "poll": "30s"}}
    agent = spawn_agent(cfg)
    await agent.ready()
    await wait_until(lambda: "discovery.started" in agent.log_text(), 10, "discovery started")

    mine = labelled_container(unique("web"), {
        "lifeguard.check.type": "container", "com.docker.compose.project": project,
        "com.docker.compose.service": "web"})
    labelled_container(unique("theirs"), {
        "lifeguard.check.type": "container", "com.docker.compose.project": other,
        "com.docker.compose.service": "theirs"})
    # Events, not the 30 s poll, bring it in.
    found = await poll(lambda: checks(agent), lambda c: "web" in c and c["web"]["state"] == "passing",
                       bound=10, what="the labelled container's check passing")
    assert "theirs" not in found

    mine.remove(force=True)
    await poll(lambda: checks(agent), lambda c: "web" not in c, bound=10, what="the check gone with its container")
    assert "theirs" not in await checks(agent)


async def test_a_label_heal_is_ignored_without_allow_heal(
    docker_url: str, docker_client: Any, labelled_container: Any, spawn_agent: Any
) -> None:
    project = unique("proj")
    cfg = agent_config([], [])
    cfg["docker"] = {"url": docker_url, "discover": {"enabled": True, "project": project, "poll": "1s"}}
    agent = spawn_agent(cfg)
    await agent.ready()
    name = unique("app")
    app = labelled_container(name, {
        "lifeguard.check.type": "tcp", "lifeguard.check.host": "127.0.0.1",
        "lifeguard.check.port": str(free_port()), "lifeguard.heal": "restart",
        "com.docker.compose.project": project, "com.docker.compose.service": "app"})
    found = await poll(lambda: checks(agent), lambda c: "app" in c and c["app"]["incident_id"],
                       bound=15, what="an incident for the labelled check")
    await asyncio.sleep(2)
    app.reload()
    assert app.attrs["RestartCount"] == 0 and app.attrs["State"]["Running"]
    logged = agent.log_events()
    assert [e for e in logged if e.get("event") == "discovery.heal_ignored" and e["container"] == name]
    assert not [e for e in logged if str(e.get("event", "")).startswith("heal.")]
    _, incident = await agent.api(f"/api/incidents/{found['app']['incident_id']}")
    assert incident["heal"] is None or not incident["heal"].get("attempts")
