"""Severity rules: the tiny language, its located config errors, and the engine raising severity."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.engine import Engine, IncidentPatch
from agent.evidence import EvidenceCollector
from agent.routing import NotifierFilter
from agent.severity_rules import Facts, RuleError, parse, raised
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.tcp import TcpCheckConfig

# --- the language ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "field", "op", "value"), [
    ("failing_for >= 2m", "failing_for", ">=", 120.0),
    ("failing_for>90s", "failing_for", ">", 90.0),
    ("  heal_attempts == 2 ", "heal_attempts", "==", 2.0),
    ("heal_attempts<3", "heal_attempts", "<", 3.0),
])
def test_a_rule_parses_into_field_comparison_and_value(text, field, op, value) -> None:
    rule = parse(text)
    assert (rule.field, rule.op, rule.value) == (field, op, value)


@pytest.mark.parametrize(("text", "column", "says"), [
    ("", 1, "expected a field"),
    ("latency > 2s", 1, "unknown field 'latency'"),
    ("failing_for 2m", 13, "expected a comparison"),
    ("failing_for >=", 15, "expected a value"),
    ("failing_for >= soon", 16, "failing_for takes a duration"),
    ("heal_attempts >= 2.5", 18, "whole number"),
    ("heal_attempts >= 2 and x", 20, "one comparison per rule"),
    ("failing_for => 2m", 13, "unexpected '='"),
    ("failing_for >= 2m;", 18, "unexpected ';'"),
])
def test_a_rule_that_does_not_parse_names_its_column(text, column, says) -> None:
    with pytest.raises(RuleError) as info:
        parse(text)
    assert info.value.column == column and says in str(info.value)


def test_the_most_severe_matching_rule_wins_and_never_lowers() -> None:
    rules = [("failing_for >= 1m", "high"), ("failing_for >= 2m", "critical"), ("heal_attempts >= 9", "critical")]
    assert raised(rules, Facts(150.0, 0), "medium") == ("critical", "failing_for >= 2m")
    assert raised(rules, Facts(70.0, 0), "medium") == ("high", "failing_for >= 1m")
    assert raised(rules, Facts(70.0, 0), "critical") is None  # never lowers
    assert raised(rules, Facts(None, 0), "low") is None  # a passing check is failing for nothing


# --- the config -----------------------------------------------------------------------------


def _load(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ={})


def test_rules_are_inherited_from_defaults_and_a_check_may_replace_them(tmp_path) -> None:
    config = _load(tmp_path, """\
        defaults:
          severity_rules: [{when: "failing_for >= 2m", severity: SEV-1}]
        checks:
          - {name: a, type: tcp, host: 127.0.0.1, port: 9}
          - {name: b, type: tcp, host: 127.0.0.1, port: 9, severity_rules: []}
        """)
    a, b = config.checks
    assert [(r.when, r.severity) for r in a.severity_rules] == [("failing_for >= 2m", "critical")]
    assert b.severity_rules == []


def test_a_bad_rule_is_a_config_error_with_its_path_and_column(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, """\
            checks:
              - name: a
                type: tcp
                host: 127.0.0.1
                port: 9
                severity_rules:
                  - {when: "failing_for >= 2m", severity: critical}
                  - {when: "failing_for >= often", severity: urgent}
            """)
    errors = "\n".join(info.value.errors)
    assert "checks[0].severity_rules[1].when: column 16: failing_for takes a duration" in errors
    assert "checks[0].severity_rules[1].severity" in errors


# --- the engine -----------------------------------------------------------------------------


def engine_for(store: Store, tmp_path: Path, clock, rules, **kw) -> Engine:
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=1,
                         notify=["ops", "pager"], severity="medium", severity_rules=rules))
    return Engine(store, [build_check(cfg, CheckContext())], evidence=EvidenceCollector(None, tmp_path),
                  notify_all=["ops", "pager"], clock=clock, **kw)


async def _fail(engine: Engine, now: dict[str, float], seconds: float) -> None:
    now["t"] += seconds
    await engine.on_result(CheckResult("db", False, now["t"], 0.001, "connection refused"))


async def _events(store: Store, notifier: str = "ops") -> list[tuple[str, str]]:
    """(event, the incident's severity as the event carries it) sent to ``notifier``, in order."""
    rows = await store.run(store.outbox.rows, None, notifier)
    found = []
    for r in rows:
        event = await store.run(store.events.get, r["event_id"])
        found.append((r["event"], event.incident["severity"]))
    return found


async def test_a_rule_raises_an_open_incident_once_with_one_update(running_store, tmp_path) -> None:
    store, now = running_store, {"t": 1000.0}
    pager = {"pager": NotifierFilter.of(None, "critical"), "ops": NotifierFilter()}
    engine = engine_for(store, tmp_path, lambda: now["t"], [{"when": "failing_for >= 2m", "severity": "critical"}],
                        notifier_filters=pager)
    await engine.restore()
    await _fail(engine, now, 1)  # opens at medium
    await _fail(engine, now, 60)
    assert await _events(store) == [("incident.opened", "medium")]
    await _fail(engine, now, 61)  # 121 s failing
    await _fail(engine, now, 10)
    assert await _events(store) == [("incident.opened", "medium"), ("incident.updated", "critical")]
    # The pager takes only critical: the update, not the opening.
    assert await _events(store, "pager") == [("incident.updated", "critical")]
    [incident] = await store.run(store.incidents.list, None, 10)
    assert incident["severity"] == "critical"
    detail = await store.run(store.incidents.get, incident["id"])
    assert "severity medium → critical by rule: failing_for >= 2m" in [t["message"] for t in detail["timeline"]]
    [updated] = [e for e in await store.run(store.events.of_incident, incident["id"]) if e.kind == "incident.updated"]
    assert updated.fields == {"changes": ["severity"], "rule": "failing_for >= 2m"}
    # The policy timer reads the new severity from the store.
    [clock] = await store.run(store.incidents.clocks)
    assert clock.severity == "critical"
    assert engine.incidents_open() == {"critical": 1}


async def test_a_rule_that_holds_at_opening_opens_at_its_severity(running_store, tmp_path) -> None:
    store, now = running_store, {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"], [{"when": "failing_for >= 0s", "severity": "high"}])
    await engine.restore()
    await _fail(engine, now, 1)
    await _fail(engine, now, 1)
    assert await _events(store) == [("incident.opened", "high")]


async def test_a_person_lowering_it_is_not_overruled_and_a_restart_remembers(running_store, tmp_path) -> None:
    store, now = running_store, {"t": 1000.0}
    rules = [{"when": "failing_for >= 1m", "severity": "high"}]
    engine = engine_for(store, tmp_path, lambda: now["t"], rules)
    await engine.restore()
    await _fail(engine, now, 1)
    await _fail(engine, now, 61)
    [incident] = await store.run(store.incidents.list, None, 10)
    assert incident["severity"] == "high"
    await engine.patch(incident["id"], IncidentPatch(severity="low"), "alice")
    await _fail(engine, now, 10)
    again = engine_for(store, tmp_path, lambda: now["t"], rules)
    await again.restore()
    await _fail(again, now, 10)
    assert (await store.run(store.incidents.get, incident["id"]))["severity"] == "low"
    assert [e for e, _ in await _events(store)] == ["incident.opened", "incident.updated", "incident.updated"]


async def test_heal_attempts_rule_and_filters_follow_a_patched_severity(running_store, tmp_path) -> None:
    store, now = running_store, {"t": 1000.0}
    pager = {"pager": NotifierFilter.of(None, "critical"), "ops": NotifierFilter()}
    engine = engine_for(store, tmp_path, lambda: now["t"], [], notifier_filters=pager)
    await engine.restore()
    await _fail(engine, now, 1)
    [incident] = await store.run(store.incidents.list, None, 10)
    await engine.patch(incident["id"], IncidentPatch(severity="critical"), "alice")
    now["t"] += 1
    await engine.on_result(CheckResult("db", True, now["t"], 0.001, "ok"))
    # The resolution follows the incident's severity now, so the critical-only pager hears of it.
    assert await _events(store, "pager") == [("incident.updated", "critical"), ("incident.resolved", "critical")]


async def test_manual_incidents_count_as_open(running_store, tmp_path) -> None:
    store, now = running_store, {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"], [])
    await engine.restore()
    found = await engine.open_manual("Payments down", "critical", "alice")
    assert engine.incidents_open() == {"critical": 1}
    restarted = engine_for(store, tmp_path, lambda: now["t"], [])
    await restarted.restore()
    assert restarted.incidents_open() == {"critical": 1}
    await restarted.resolve(found["id"], "alice")
    assert restarted.incidents_open() == {}
