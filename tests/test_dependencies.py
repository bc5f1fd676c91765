"""Dependencies: ``depends_on`` errors located in the config, and the engine against a real SQLite
store with an injected clock — a dependant's incident held back behind its cause's, listed in the
cause's ``impact``, released once when the cause resolves with the dependant still failing; and the
Docker engine's own incident when it cannot be reached (a real ``DockerEngine`` on a socket that
is not there, then made to point at the session's real dockerd)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from actions.healers import HEALERS, Healer, HealOutcome
from agent.config.depends import dependency_errors
from agent.dependencies import DOCKER_CHECK
from agent.dockerclient import DockerEngine
from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.container import ContainerCheckConfig
from checks.tcp import TcpCheckConfig
from tests.test_config import errors, load

T0 = 1_800_000_000.0


# -- the config --------------------------------------------------------------------------------
CHECKS = """\
checks:
  - {name: db, type: tcp, host: 127.0.0.1, port: 5432}
  - {name: api, type: tcp, host: 127.0.0.1, port: 8080, depends_on: [db]}
  - {name: web, type: tcp, host: 127.0.0.1, port: 80, depends_on: [api, db]}
"""


def test_depends_on_names_checks_and_loads(tmp_path: Path) -> None:
    config = load(tmp_path, CHECKS)
    assert (config.check("db").depends_on, config.check("web").depends_on) == ([], ["api", "db"])


def test_an_unknown_check_in_depends_on_is_located_with_a_hint(tmp_path: Path) -> None:
    text = CHECKS.replace("depends_on: [api, db]", "depends_on: [api, dbb]")
    assert errors(tmp_path, text) == ["checks[2].depends_on[1]: no check named 'dbb' (did you mean 'db'?)"]


@pytest.mark.parametrize("text, said", [
    (CHECKS.replace("port: 5432}", "port: 5432, depends_on: [web]}"), "checks[0].depends_on: a cycle: db → web → db"),
    (CHECKS.replace("port: 5432}", "port: 5432, depends_on: [db]}"), "checks[0].depends_on: a cycle: db → db"),
    (CHECKS.replace("port: 5432}", "port: 5432, depends_on: [api]}"), "checks[0].depends_on: a cycle: db → api → db"),
])
def test_a_cycle_in_depends_on_is_one_located_error(tmp_path: Path, text: str, said: str) -> None:
    assert errors(tmp_path, text) == [said]


def test_dependency_errors_ignore_what_the_models_report() -> None:
    assert dependency_errors([{"name": "a", "depends_on": "b"}, [1], {"depends_on": [3]}]) == []


# -- the engine --------------------------------------------------------------------------------
class Switch(Healer):
    """A heal kind of the test's own that records what it was asked to heal."""

    kind = "dep_switch"
    verb, verb_ing, noun = "flip", "flipping", "switch"
    calls: list[str] = []

    async def heal(self) -> HealOutcome:
        Switch.calls.append(self.target)
        return HealOutcome(True, f"flipped {self.target}")


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> type[Switch]:
    monkeypatch.setitem(HEALERS, Switch.kind, Switch)
    monkeypatch.setattr(Switch, "calls", [])
    return Switch


def tcp(name: str, **extra: Any) -> TcpCheckConfig:
    return TcpCheckConfig.model_validate(dict(name=name, type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=1,
                          notify=["ops"], **extra))


def make_engine(store: Store, tmp_path: Path, now: dict[str, float], configs: list[Any],
                context: CheckContext | None = None) -> Engine:
    context = context or CheckContext()
    engine = Engine(store, [build_check(c, context) for c in configs], clients=context,
                    evidence=EvidenceCollector(context.docker, tmp_path, time_bound=1.0), notify_all=["ops"],
                    clock=lambda: now["t"])
    engine.deps.impact_coalesce = 0.0  # each result here is drained before the next
    return engine


def db_and_api(store: Store, tmp_path: Path, now: dict[str, float]) -> Engine:
    return make_engine(store, tmp_path, now, [
        tcp("db"), tcp("api", depends_on=["db"], heal={"dep_switch": "api"}),
    ])


async def result(engine: Engine, now: dict[str, float], check: str, ok: bool, at: float) -> None:
    now["t"] = at
    await engine.on_result(CheckResult(check, ok, at, 0.001, "ok" if ok else "connection refused"))
    await engine.drain(5)  # heals, evidence, impact notes and releases it spawned


async def events(store: Store) -> list[tuple[str, str]]:
    """(check, event) of every event written, in order."""
    found = []
    for row in await store.run(store.outbox.rows):
        incident = await store.run(store.incidents.get, row["incident_id"])
        assert incident is not None
        found.append((incident["check"], row["event"]))
    return found


async def incident_of(store: Store, check: str) -> dict[str, Any]:
    rows = [i for i in await store.run(store.incidents.list, None, 50) if i["check"] == check]
    assert len(rows) == 1, rows
    found = await store.run(store.incidents.get, rows[0]["id"])
    assert found is not None
    return found


async def test_a_dependant_is_held_back_behind_its_cause_then_released_once(
    running_store: Store, tmp_path: Path, switch: type[Switch]
) -> None:
    store, now = running_store, {"t": T0}
    engine = db_and_api(store, tmp_path, now)
    await engine.restore()
    await result(engine, now, "db", False, T0)
    await result(engine, now, "api", False, T0 + 1)
    await result(engine, now, "api", False, T0 + 2)
    db, api = await incident_of(store, "db"), await incident_of(store, "api")
    assert api["suppressed_by"] == db["id"] and api["status"] == "open"
    assert db["impact"] == [{"check": "api", "incident_id": api["id"]}]
    assert ("impact", f"api failing too: its incident {api['id']} is held back") in [
        (t["kind"], t["message"]) for t in db["timeline"]]
    # One page for one cause: the dependant is recorded, neither sent nor healed.
    assert await events(store) == [("db", "incident.opened"), ("db", "incident.updated")]
    assert switch.calls == []

    # The cause resolves: the dependant is asked to run at once; still failing, it is released
    # as if it had just opened — one incident.opened, and healed.
    asked: list[str] = []
    engine.deps.run_now = asked.append
    await result(engine, now, "db", True, T0 + 10)
    assert asked == ["api"]
    await result(engine, now, "api", False, T0 + 11)
    await result(engine, now, "api", False, T0 + 12)
    assert (await events(store))[2:] == [
        ("db", "incident.resolved"), ("api", "incident.opened"), ("api", "incident.heal_attempted")]
    assert switch.calls == ["api"]
    api = await incident_of(store, "api")
    assert api["suppressed_by"] is None
    assert [t["kind"] for t in api["timeline"]].count("released") == 1
    # The cause keeps its impact after it resolved, in the API and in its resolved evidence.
    db = await incident_of(store, "db")
    assert db["impact"] == [{"check": "api", "incident_id": api["id"]}]
    bundle = (await store.run(store.evidence.get, db["id"]))["resolved"]
    assert bundle["impact"] == [{"check": "api", "incident_id": api["id"]}]


async def test_a_dependant_that_recovers_while_held_back_sends_nothing(
    running_store: Store, tmp_path: Path, switch: type[Switch]
) -> None:
    store, now = running_store, {"t": T0}
    engine = db_and_api(store, tmp_path, now)
    await engine.restore()
    await result(engine, now, "db", False, T0)
    await result(engine, now, "api", False, T0 + 1)
    await result(engine, now, "api", True, T0 + 2)
    await result(engine, now, "db", True, T0 + 3)
    await engine.release_maintenance()
    assert [e for e in await events(store) if e[0] == "api"] == []
    assert (await incident_of(store, "api"))["status"] == "resolved" and switch.calls == []


async def test_a_restart_while_held_back_still_releases_once(
    running_store: Store, tmp_path: Path, switch: type[Switch]
) -> None:
    store, now = running_store, {"t": T0}
    first = db_and_api(store, tmp_path, now)
    await first.restore()
    await result(first, now, "db", False, T0)
    await result(first, now, "api", False, T0 + 1)
    second = db_and_api(store, tmp_path, now)  # a new process: the hold comes from the store
    await second.restore()
    await result(second, now, "api", False, T0 + 2)
    assert [e for e in await events(store) if e[0] == "api"] == []
    await result(second, now, "db", True, T0 + 3)
    await result(second, now, "api", False, T0 + 4)  # released: one incident.opened
    third = db_and_api(store, tmp_path, now)
    await third.restore()
    await result(third, now, "api", False, T0 + 5)
    assert [e for e in await events(store) if e == ("api", "incident.opened")] == [("api", "incident.opened")]


async def test_a_dependant_of_a_dependant_is_held_back_by_the_root_cause(
    running_store: Store, tmp_path: Path
) -> None:
    store, now = running_store, {"t": T0}
    engine = make_engine(store, tmp_path, now, [tcp("db"), tcp("api", depends_on=["db"]),
                                                tcp("web", depends_on=["api"])])
    await engine.restore()
    for i, check in enumerate(("db", "api", "web")):
        await result(engine, now, check, False, T0 + i)
    db, web = await incident_of(store, "db"), await incident_of(store, "web")
    assert web["suppressed_by"] == db["id"]
    assert [i["check"] for i in db["impact"]] == ["api", "web"]
    assert [e for e in await events(store) if e[1] == "incident.opened"] == [("db", "incident.opened")]


async def test_dependants_failing_together_make_one_impact_event(running_store: Store, tmp_path: Path) -> None:
    store, now = running_store, {"t": T0}
    engine = make_engine(store, tmp_path, now, [tcp("db")] + [tcp(f"svc{i}", depends_on=["db"]) for i in range(5)])
    engine.deps.impact_coalesce = 0.05
    await engine.restore()
    await result(engine, now, "db", False, T0)
    for i in range(5):
        now["t"] = T0 + 1
        await engine.on_result(CheckResult(f"svc{i}", False, T0 + 1, 0.001, "connection refused"))
    await engine.drain(5)
    db = await incident_of(store, "db")
    assert len(db["impact"]) == 5 and [t["kind"] for t in db["timeline"]].count("impact") == 5
    assert await events(store) == [("db", "incident.opened"), ("db", "incident.updated")]


# -- the Docker engine's own incident -----------------------------------------------------------
def container(name: str, target: str) -> ContainerCheckConfig:
    return ContainerCheckConfig.model_validate(dict(name=name, type="container", container=target, open_after="0s", resolve_after=1,
                                notify=["ops"], timeout="2s", interval="1h"))


async def test_docker_unreachable_opens_one_incident_that_holds_back_every_container_check(
    running_store: Store, tmp_path: Path, docker_url: str, run_container: Any
) -> None:
    from tests.fixtures_docker import unique

    name = unique("dep")
    run_container(name)
    socket_dir = Path(f"/tmp/lg-dep-{os.getpid()}")
    socket_dir.mkdir(exist_ok=True)
    socket = socket_dir / "docker.sock"
    socket.unlink(missing_ok=True)
    docker = DockerEngine(f"unix://{socket}", timeout=2.0)  # nothing listens there yet
    try:
        store, now = running_store, {"t": T0}
        engine = make_engine(store, tmp_path, now, [container("app", name), container("worker", name), tcp("db")],
                             CheckContext(docker=docker))
        engine.deps.docker = docker
        engine.deps.docker_settle = 0.2  # seconds it must keep answering before its incident resolves
        docker.on_reachability = engine.deps.docker_changed
        await engine.restore()
        for i, check in enumerate(("app", "worker")):
            now["t"] = T0 + i
            run = await engine.tracked[check].check.run(lambda: now["t"])
            assert "Docker unreachable" in run.message
            await engine.on_result(run)
            await engine.drain(5)
        docker_incident = await incident_of(store, DOCKER_CHECK)
        assert (docker_incident["check_type"], docker_incident["severity"]) == ("docker", "high")
        held = [await incident_of(store, c) for c in ("app", "worker")]
        assert [i["suppressed_by"] for i in held] == [docker_incident["id"]] * 2
        assert [i["check"] for i in docker_incident["impact"]] == ["app", "worker"]
        assert [e for e in await events(store) if e[1] == "incident.opened"] == [("docker", "incident.opened")]

        # The engine answers again (the socket now leads to the session's dockerd).
        socket.symlink_to(docker_url.removeprefix("unix://"))
        assert await docker.ping()
        await engine.drain(5)
        assert (await incident_of(store, DOCKER_CHECK))["status"] == "resolved"
        for i, check in enumerate(("app", "worker")):
            now["t"] = T0 + 10 + i
            run = await engine.tracked[check].check.run(lambda: now["t"])
            assert run.ok, run.message
            await engine.on_result(run)
            await engine.drain(5)
        assert [e for e in await events(store) if e[0] in ("app", "worker")] == []  # they recovered held back
        assert [e[1] for e in await events(store) if e[0] == "docker"] == [
            "incident.opened", "incident.updated", "incident.updated", "incident.resolved"]
    finally:
        await docker.close()
        socket.unlink(missing_ok=True)
        socket_dir.rmdir()


async def test_reminders_of_the_docker_incident_go_to_the_defaults_notifiers(running_store: Store, tmp_path: Path) -> None:
    """The engine's own incident belongs to no check: its policy's reminders go where it was sent
    (``defaults.notify``), not to every notifier."""
    from agent.policies import Due
    from agent.store import Change

    store, now = running_store, {"t": T0}
    engine = make_engine(store, tmp_path, now, [tcp("db")])
    engine.set_routing(["ops", "pager"], {})
    engine.deps.set_docker_defaults("high", ["pager"])
    await store.run(store.apply, Change(
        incident_id="inc_docker000000000001", at=T0, notifiers=["pager"],
        create={"check_name": DOCKER_CHECK, "check_type": DOCKER_CHECK, "target": "unix:///x.sock",
                "container": None, "status": "open", "severity": "high", "title": "docker unreachable",
                "opened_at": T0, "max_restarts": None},
        timeline=[("opened", "Docker unreachable")], events=[("incident.opened", None)],
    ))
    now["t"] = T0 + 3600
    assert await engine.fire_policy(Due("remind_unacknowledged", "inc_docker000000000001", after=900.0))
    rows = await store.run(store.outbox.rows, "inc_docker000000000001")
    assert [(r["event"], r["notifier"]) for r in rows] == [("incident.opened", "pager"), ("incident.reminder", "pager")]
