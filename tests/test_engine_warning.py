"""The warning state through the engine: a real SQLite store, a real evidence collector, an injected clock.

A warning result passes; it opens an incident only for a check with ``open_on: warning``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import SHOWN_DETAILS_LIMIT, CheckResult
from checks.tcp import TcpCheckConfig

PERF = [{"label": "queue", "value": 75.0, "uom": "", "warn": "50", "crit": "100", "min": 0.0, "max": None}]


@pytest.fixture
def store(running_store: Store) -> Store:
    return running_store


def engine_for(store: Store, tmp_path: Path, clock: Any, secrets: tuple[str, ...] = (), **check: Any) -> Engine:
    cfg = TcpCheckConfig.model_validate(dict(name="queue", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=2,
                         notify=["ops"], **check))
    return Engine(store, [build_check(cfg, CheckContext())], heal_enabled=True, secrets=secrets,
                  evidence=EvidenceCollector(None, tmp_path), notify_all=["ops"], clock=clock)


def warning(at: float, message: str = "QUEUE WARNING - 75 waiting") -> CheckResult:
    return CheckResult("queue", True, at, 0.001, message, {"perfdata": PERF, "exit_code": 1}, warning=True)


def ok(at: float) -> CheckResult:
    return CheckResult("queue", True, at, 0.001, "QUEUE OK", {"perfdata": [], "exit_code": 0})


async def test_warnings_open_no_incident_by_default(store: Store, tmp_path: Path) -> None:
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    await engine.restore()
    for _ in range(3):
        now["t"] += 10
        await engine.on_result(warning(now["t"]))
    assert await store.run(store.incidents.list, None, 10) == []
    [view] = engine.check_views()
    assert view.incident_id is None and view.last is not None and view.last.status == "warning"
    await engine.drain(5)
    rows = await store.run(store.results.recent, "queue", 10)
    assert [r["ok"] for r in rows] == [True, True, True]  # stored results keep ok


async def test_open_on_warning_opens_at_a_warning_and_resolves_on_plain_passes(store: Store, tmp_path: Path) -> None:
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"], open_on="warning")
    await engine.restore()
    steps: list[tuple[CheckResult | None, str | None]] = []
    script = [ok, warning, warning, ok, ok]
    for make in script:
        now["t"] += 10
        await engine.on_result(make(now["t"]))
        steps.append((engine.check_views()[0].last, engine.tracked["queue"].state.incident_id))
    opened = [incident for _, incident in steps]
    assert opened[0] is None and opened[1] is not None and opened[1] == opened[2] == opened[3]
    assert opened[4] is None  # two plain passes in a row resolved it
    incident_id = opened[1]
    assert incident_id is not None
    incident = await store.run(store.incidents.get, incident_id)
    assert incident["status"] == "resolved"
    assert incident["title"] == "queue warning: QUEUE WARNING - 75 waiting"  # opened by a warning
    await engine.evidence_ready(incident_id, "opened")
    await engine.drain(5)
    assert [r["event"] for r in await store.run(store.outbox.rows)] == ["incident.opened", "incident.resolved"]
    evidence = await store.run(store.evidence.get, incident_id)
    assert evidence["opened"]["details"]["perfdata"] == PERF  # what the plugin reported, in the bundle
    assert evidence["opened"]["checks"][-1]["warning"] is True


async def test_open_on_warning_still_opens_on_a_failure(store: Store, tmp_path: Path) -> None:
    engine = engine_for(store, tmp_path, lambda: 1000.0, open_on="warning")
    await engine.restore()
    await engine.on_result(CheckResult("queue", False, 1000.0, 0.001, "QUEUE CRITICAL", {"exit_code": 2}))
    assert engine.tracked["queue"].state.incident_id is not None
    await engine.drain(5)


async def test_the_last_details_are_kept_bounded_and_masked(store: Store, tmp_path: Path) -> None:
    secret = "hunter2-secret-value"
    engine = engine_for(store, tmp_path, lambda: 1000.0, secrets=(secret,))
    await engine.restore()
    await engine.on_result(warning(1000.0))
    [view] = engine.check_views()
    assert view.details == {"perfdata": PERF, "exit_code": 1}
    assert view.last is not None and view.last.details == {}  # history keeps the short form

    leaky = [{"label": f"{secret}-{i}", "value": float(i)} for i in range(500)]
    await engine.on_result(CheckResult("queue", True, 1001.0, 0.001, "many", {"perfdata": leaky}))
    [view] = engine.check_views()
    assert view.details["truncated"] is True and len(view.details["perfdata"]) == 20
    assert secret not in str(view.details) and view.details["perfdata"][0]["label"] == "[redacted]-0"
    assert len(str(view.details)) < SHOWN_DETAILS_LIMIT

    await engine.on_result(CheckResult("queue", True, 1002.0, 0.001, "HTTP 200", {"response": {"body": "x"}}))
    assert engine.check_views()[0].details == {}  # a response is the evidence's, not the API's
    await engine.drain(5)


def test_open_on_is_inherited_from_defaults_and_a_check_may_say_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "defaults: {open_on: warning}\n"
        "checks:\n"
        "  - {name: a, type: command, command: [check_a]}\n"
        "  - {name: b, type: command, command: [check_b], open_on: FAILING}\n"
    )
    config = load_config(path, {})
    assert (config.defaults.open_on, config.check("a").open_on, config.check("b").open_on) == (
        "warning", "warning", "failing",
    )


def test_metrics_show_a_warning_beside_up() -> None:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from agent.metrics import CheckFacts, CheckTally, Histogram, Snapshot, families

    tally = CheckTally()
    snap = Snapshot(
        version="9.9.9",
        checks=[CheckFacts("disk", "command", True, True), CheckFacts("web", "http", True),
                CheckFacts("db", "tcp", False), CheckFacts("new", "tcp", None)],
        runs=tally.runs, durations=tally.durations, lag=Histogram((1.0,)), incidents_open={}, incidents_opened={},
        heals={}, heal_budget={}, deliveries={}, pending={}, reloads={},
    )

    class One:
        def collect(self) -> Any:
            return families(snap)

    registry = CollectorRegistry()
    registry.register(One())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'lifeguard_check_up{check="disk",type="command"} 1.0' in text  # a warning is still up
    assert 'lifeguard_check_warning{check="disk",type="command"} 1.0' in text
    assert 'lifeguard_check_warning{check="web",type="http"} 0.0' in text
    assert 'lifeguard_check_warning{check="db",type="tcp"} 0.0' in text
    assert 'check="new"' not in text
