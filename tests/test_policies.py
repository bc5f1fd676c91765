"""Severity policies: the pure rule, the engine recording what comes due, and a real agent restart."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.policies import IncidentClock, PoliciesConfig, PolicyTimer, SeverityPolicy, due, next_due_at
from agent.routing import NotifierFilter
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.tcp import TcpCheckConfig
from tests.fixtures_agent import SECRET, Receiver, agent_config, wait_until

CRITICAL = PoliciesConfig().of("critical")


def test_shipped_defaults_follow_the_issue() -> None:
    p = PoliciesConfig()
    assert (CRITICAL.ack_within, CRITICAL.remind_every, CRITICAL.update_every) == (300, 300, 900)
    assert [(s.after, s.notify) for s in CRITICAL.escalate] == [(300, ["secondary"]), (3600, ["lead"])]
    assert CRITICAL.postmortem == "required" and p.of("high").postmortem == "optional"
    assert [(s.after, s.notify) for s in p.of("high").escalate] == [(900, ["secondary"])]
    assert p.of("medium").ack_within == 3600 and p.of("low") == SeverityPolicy()


def test_nothing_is_due_before_its_moment_and_each_step_once() -> None:
    clock = IncidentClock("inc_1", "critical", opened_at=1000.0)
    assert due(clock, CRITICAL, 1299.0) == []
    assert next_due_at(clock, CRITICAL) == 1300.0
    kinds = [(d.kind, d.level) for d in due(clock, CRITICAL, 1300.0)]
    assert kinds == [("escalate", 1), ("ack_overdue", 0), ("remind_unacknowledged", 0)]
    fired = IncidentClock("inc_1", "critical", 1000.0, escalated_levels=frozenset({1}), ack_overdue=True,
                          last_unacknowledged_reminder=1300.0)
    assert due(fired, CRITICAL, 1599.0) == []
    assert [(d.kind, d.level) for d in due(fired, CRITICAL, 4600.0)] == [
        ("remind_unacknowledged", 0), ("escalate", 2)
    ]


def test_acknowledged_stops_escalation_and_reminds_only_without_a_status_update() -> None:
    acked = IncidentClock("inc_1", "critical", 1000.0, acknowledged_at=1100.0)
    assert due(acked, CRITICAL, 1999.0) == []
    assert [d.kind for d in due(acked, CRITICAL, 2000.0)] == ["remind_update_due"]
    updated = IncidentClock("inc_1", "critical", 1000.0, acknowledged_at=1100.0, last_update_at=1900.0)
    assert due(updated, CRITICAL, 2000.0) == [] and next_due_at(updated, CRITICAL) == 2800.0
    assert next_due_at(IncidentClock("inc_1", "low", 1000.0), PoliciesConfig().of("low")) is None


def test_policies_and_postmortem_after_load_with_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "notifiers: [{name: ops, type: file, path: events.jsonl}]\n"
        "policies:\n  high: {ack_within: 2m, escalate: [{after: 1m, notify: [ops]}]}\n"
        "postmortem_after: 2h\n"
    )
    cfg = load_config(path)
    assert cfg.policies.of("high").ack_within == 120 and cfg.policies.of("high").remind_every is None
    assert cfg.policies.of("critical") == CRITICAL and cfg.postmortem_after == 7200
    path.write_text(
        "notifiers: [{name: ops, type: file, path: events.jsonl}]\n"
        "policies:\n  high: {ack_within: soon, escalate: [{after: 1m, notify: [pager]}]}\n"
        "  urgent: {}\n"
        "postmortem_after: -1h\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "policies.high.ack_within" in text and "policies.urgent" in text
    assert "policies.high.escalate[0].notify: no notifier named 'pager'" in text
    assert "postmortem_after" in text


# --- the engine, against a real store, with an injected clock --------------------------------------


@pytest.fixture
def store(running_store: Store) -> Store:
    return running_store


def engine_for(store: Store, tmp_path: Path, clock, policies: PoliciesConfig | None = None) -> Engine:
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=2,
                         notify=["ops"], severity="critical"))
    return Engine(store, [build_check(cfg, CheckContext())], evidence=EvidenceCollector(None, tmp_path),
                  notify_all=["ops", "secondary"], clock=clock, policies=policies,
                  notifier_filters={"ops": NotifierFilter(), "secondary": NotifierFilter()})


def timer_for(engine: Engine, store: Store, clock) -> PolicyTimer:
    return PolicyTimer(lambda: store.run(store.incidents.clocks), engine.fire_policy, lambda: engine.policies,
                       clock=clock)


async def sent(store: Store) -> list[tuple[str, str | None, str]]:
    rows = await store.run(lambda: store.db.execute(
        "SELECT e.kind, e.reason, o.notifier FROM outbox o JOIN events e ON e.id = o.event_id ORDER BY o.id"
    ).fetchall())
    return [tuple(r) for r in rows]


async def test_escalation_ack_overdue_and_reminders_fire_once_each_across_a_restart(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    await engine.restore()
    await engine.on_result(CheckResult("db", False, now["t"], 0.001, "refused"))
    incident_id = (await store.run(store.incidents.list, None, 10))[0]["id"]
    timer = timer_for(engine, store, lambda: now["t"])
    now["t"] = 1299.0
    assert await timer.tick() == 1300.0
    now["t"] = 1300.0
    assert await timer.tick() == 1600.0
    assert await timer.tick() == 1600.0  # a second tick at the same moment fires nothing
    assert (await sent(store))[1:] == [
        ("incident.escalated", "unacknowledged", "ops"), ("incident.escalated", "unacknowledged", "secondary"),
        ("incident.reminder", "unacknowledged", "ops"),
    ]
    kinds = [t["kind"] for t in (await store.run(store.incidents.get, incident_id))["timeline"]]
    assert kinds == ["opened", "escalated", "ack_overdue", "reminder"]

    # A restart an hour later: one reminder catches up, step 2 fires once, nothing repeats.
    now["t"] = 4700.0
    again = engine_for(store, tmp_path, lambda: now["t"])
    await again.restore()
    await timer_for(again, store, lambda: now["t"]).tick()
    await timer_for(again, store, lambda: now["t"]).tick()
    events = [(k, r) for k, r, n in await sent(store) if n == "ops"]
    assert events.count(("incident.escalated", "unacknowledged")) == 2
    assert events.count(("incident.reminder", "unacknowledged")) == 2
    escalated = [e for e in await store.run(store.events.of_incident, incident_id) if e.kind == "incident.escalated"]
    assert [e.fields["level"] for e in escalated] == [1, 2]

    # Acknowledged: no more escalation; an update_due reminder only without a status update.
    await again.acknowledge(incident_id, "ann")
    now["t"] = 4700.0 + 899
    await timer_for(again, store, lambda: now["t"]).tick()
    await again.post_update(incident_id, "identified", "the disk is full", "ann")
    now["t"] = 4700.0 + 1000
    await timer_for(again, store, lambda: now["t"]).tick()
    assert not [e for e in await sent(store) if e[0] == "incident.reminder" and e[1] == "update_due"]
    now["t"] = 4700.0 + 899 + 900
    await timer_for(again, store, lambda: now["t"]).tick()
    await timer_for(again, store, lambda: now["t"]).tick()
    assert [e for e in await sent(store) if e[0] == "incident.reminder" and e[1] == "update_due"] == [
        ("incident.reminder", "update_due", "ops")
    ]


async def test_a_stale_due_item_is_not_fired_after_acknowledge(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_for(store, tmp_path, lambda: now["t"])
    await engine.restore()
    await engine.on_result(CheckResult("db", False, now["t"], 0.001, "refused"))
    incident_id = (await store.run(store.incidents.list, None, 10))[0]["id"]
    clock = (await store.run(store.incidents.clocks))[0]
    now["t"] = 1400.0
    item = due(clock, CRITICAL, now["t"])[0]
    await engine.acknowledge(incident_id, "ann")
    assert await engine.fire_policy(item) is False
    assert [k for k, _, _ in await sent(store)] == ["incident.opened", "incident.acknowledged"]


# --- a real agent, killed and restarted ----------------------------------------------------------


async def test_each_escalation_step_is_sent_once_across_sigkill_and_restart(tmp_path, spawn_agent) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        hook = {"type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "1s"}
        cfg = agent_config(
            [{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": 9, "severity": "critical",
              "notify": ["ops"]}],
            [{"name": "ops", **hook}, {"name": "pager", **hook}],
        )
        cfg["policies"] = {"critical": {"escalate": [{"after": "2s", "notify": ["pager"]},
                                                     {"after": "4s", "notify": ["pager"]}]}}
        env = {"HOOK_SECRET": SECRET}
        agent = spawn_agent(cfg, env)
        await agent.ready()
        await wait_until(lambda: receiver.of("incident.opened"), 10, "incident.opened")
        agent.kill()  # before step 1 is due
        await asyncio.sleep(2.5)
        again = spawn_agent(cfg, env)
        await again.ready()
        await wait_until(lambda: len(receiver.of("incident.escalated")) >= 4, 15, "both steps, to ops and pager")
        again.signal(signal.SIGTERM)
        assert await again.wait() == 0
        third = spawn_agent(cfg, env)
        await third.ready()
        await asyncio.sleep(1.0)
        escalated = receiver.of("incident.escalated")
        assert sorted(e["level"] for e in escalated) == [1, 1, 2, 2]
        assert {e["reason"] for e in escalated} == {"unacknowledged"}
        assert len({e["event_id"] for e in escalated}) == 2  # one event per step, to both notifiers
    finally:
        await receiver.stop()
