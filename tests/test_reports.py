"""The incident report: figures of a fixture history written through the store into a real SQLite
file, against values computed by hand; its config; its API route (token, a bad ``since``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.api import create_app
from agent.config import ConfigError, load_config
from agent.config.policies import PoliciesConfig
from agent.config.report import DEFAULT_TARGETS
from agent.daemon import _Reports
from agent.reports import incident_report, report_lines
from agent.store import Change, Store
from agent.timefmt import iso
from tests.test_api_schema import Board, Desk, Facts, Reader

T0 = 1_795_000_000.0


def _incident(
    store: Store, incident_id: str, *, check: str, severity: str, opened: float, failing_since: float | None = None,
    acknowledged: float | None = None, resolved: float | None = None, timeline: list[tuple[float, str, str]] = (),
    manual: bool = False, postmortem_required: int | None = None, postmortem_path: str | None = None,
) -> None:
    store.apply(Change(incident_id, opened, create={
        "check_name": check, "check_type": "manual" if manual else "http", "target": "", "container": None,
        "status": "open", "severity": severity, "title": f"{check} failing", "opened_at": opened,
        "max_restarts": None, "manual": int(manual), "failing_since": failing_since,
    }, timeline=[("opened", "failing")]))
    for at, kind, message in timeline:
        store.apply(Change(incident_id, at, timeline=[(kind, message)]))
    if acknowledged is not None:
        store.apply(Change(incident_id, acknowledged, update={"status": "acknowledged", "acknowledged_at": acknowledged},
                           timeline=[("acknowledged", "acknowledged by ann")]))
    if resolved is not None:
        store.apply(Change(incident_id, resolved, update={
            "status": "resolved", "resolved_at": resolved, "resolve_reason": "recovered",
            "postmortem_required": postmortem_required, "postmortem_path": postmortem_path,
        }, timeline=[("resolved", "recovered")]))


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[Store]:
    """Five incidents in the period [T0, …] and two before it (see each one's comment)."""
    store = Store(tmp_path / "lifeguard.db")
    await store.run(store.open)
    # Before the period: web's previous incident resolved 87,100 s before A opened (not a recurrence
    # of it), and an unrelated check's.
    _incident(store, "inc_f0", check="web", severity="high", opened=T0 - 90_000, resolved=T0 - 87_000)
    _incident(store, "inc_f1", check="old", severity="low", opened=T0 - 50_000, resolved=T0 - 49_000)
    # A: critical, detected in 60 s, acknowledged in 120 s, resolved in 1,200 s; one heal, it worked.
    _incident(store, "inc_a0", check="web", severity="critical", opened=T0 + 100, failing_since=T0 + 40,
              acknowledged=T0 + 220, resolved=T0 + 1_300, postmortem_required=1, postmortem_path="/pm/inc_a0.md",
              timeline=[(T0 + 100, "heal_attempted", "restarting container 'web'"),
                        (T0 + 130, "heal_succeeded", "check passed again after the restart")])
    # B: critical, 1 h after A resolved (recurring), detected in 20 s, never acknowledged (ack_overdue),
    # resolved in 7,200 s; a dry run is no heal attempt; its postmortem is required and not written.
    _incident(store, "inc_b0", check="web", severity="critical", opened=T0 + 4_900, failing_since=T0 + 4_880,
              resolved=T0 + 12_100, postmortem_required=1,
              timeline=[(T0 + 4_900, "heal_attempted", "dry run: would restart container 'web' (heal is off)"),
                        (T0 + 5_200, "ack_overdue", "not acknowledged within 5m")])
    # C: high, detected in 60 s, acknowledged after 1,200 s (> 15 min: SLA missed), resolved in 1,800 s;
    # two heals, one of them worked.
    _incident(store, "inc_c0", check="db", severity="high", opened=T0 + 20_000, failing_since=T0 + 19_940,
              acknowledged=T0 + 21_200, resolved=T0 + 21_800, postmortem_required=0,
              timeline=[(T0 + 20_000, "heal_attempted", "restarting container 'db'"),
                        (T0 + 20_100, "heal_failed", "check still failing when the cooldown ended"),
                        (T0 + 20_100, "heal_attempted", "restarting container 'db'"),
                        (T0 + 20_200, "heal_succeeded", "check passed again after the restart")])
    # D: manual, medium, acknowledged in 300 s (within 1 h), unresolved: no MTTD, no MTTR.
    _incident(store, "inc_d0", check="", severity="medium", opened=T0 + 30_000, acknowledged=T0 + 30_300,
              manual=True)
    # E: low (no SLA), db again 18,200 s after C resolved (recurring), detected in 30 s, 600 s in
    # maintenance, resolved in 1,000 s; resolved before postmortems were recorded (required: by the rule, no).
    _incident(store, "inc_e0", check="db", severity="low", opened=T0 + 40_000, failing_since=T0 + 39_970,
              resolved=T0 + 41_000,
              timeline=[(T0 + 40_000, "maintenance", "in maintenance (patching): nothing sent, nothing healed"),
                        (T0 + 40_600, "maintenance_ended", "maintenance over with the incident still open")])
    yield store
    await store.aclose()


def _report(store: Store, since: float, until: float) -> dict[str, Any]:
    incidents, timeline = store.reports.history(since, until)
    return incident_report(incidents, timeline, since=since, until=until, policies=PoliciesConfig(),
                           postmortem_after=4 * 3600.0, targets=DEFAULT_TARGETS)


def test_the_figures_of_a_history_are_the_ones_computed_by_hand(history: Store) -> None:
    report = _report(history, T0, T0 + 50_000)
    assert (report["total"], report["unresolved"]) == (5, 1)
    assert report["by_severity"] == {
        "critical": {"count": 2, "mtta_s": 120.0, "mttr_s": 4_200.0, "mttd_s": 40.0,
                     "ack_sla_met": 1, "ack_sla_missed": 1},
        "high": {"count": 1, "mtta_s": 1_200.0, "mttr_s": 1_800.0, "mttd_s": 60.0, "ack_sla_met": 0, "ack_sla_missed": 1},
        "medium": {"count": 1, "mtta_s": 300.0, "mttr_s": None, "mttd_s": None, "ack_sla_met": 1, "ack_sla_missed": 0},
        "low": {"count": 1, "mtta_s": None, "mttr_s": 1_000.0, "mttd_s": 30.0, "ack_sla_met": 0, "ack_sla_missed": 0},
    }
    assert report["heals"] == {"attempted": 3, "succeeded": 2} and report["heal_success_rate"] == 0.667
    assert report["recurring"] == {"count": 2, "incidents": ["inc_b0", "inc_e0"]}
    assert report["postmortems"] == {"required": 2, "written": 1}
    assert report["maintenance"] == {"incidents": 1, "time_s": 600.0}
    assert report["by_check"] == {"web": 2, "db": 2, "(manual)": 1}
    assert [(t["name"], t["actual_s"], t["met"]) for t in report["targets"]] == [
        ("MTTA < 5m for SEV-1", 120.0, True),
        ("MTTR < 1h for SEV-1", 4_200.0, False),
        ("MTTA < 15m for SEV-2", 1_200.0, False),
        ("MTTR < 4h for SEV-2", 1_800.0, True),
    ]
    assert (report["since"], report["until"]) == (iso(T0), iso(T0 + 50_000))


def test_a_period_counts_only_the_incidents_opened_in_it(history: Store) -> None:
    report = _report(history, T0 + 20_000, T0 + 35_000)  # C and D
    assert report["total"] == 2 and report["by_check"] == {"db": 1, "(manual)": 1}
    assert report["recurring"]["count"] == 0  # C's previous db incident: none
    empty = _report(history, T0 + 100_000, T0 + 200_000)
    assert empty["total"] == 0 and empty["heal_success_rate"] is None
    assert all(t["met"] is None for t in empty["targets"])


def test_an_unacknowledged_incident_past_its_sla_is_missed_even_without_ack_overdue() -> None:
    row = {"id": "inc_1", "check_name": "web", "severity": "critical", "manual": 0, "opened_at": 0.0,
           "acknowledged_at": None, "resolved_at": None, "failing_since": None, "postmortem_required": None,
           "postmortem_path": None}
    report = incident_report([row], [], since=0.0, until=600.0, policies=PoliciesConfig(), postmortem_after=1.0,
                             targets=[])
    assert (report["by_severity"]["critical"]["ack_sla_met"], report["by_severity"]["critical"]["ack_sla_missed"]) \
        == (0, 1)
    quick = dict(row, resolved_at=60.0)  # resolved unacknowledged within the SLA: neither
    report = incident_report([quick], [], since=0.0, until=600.0, policies=PoliciesConfig(), postmortem_after=1.0,
                             targets=[])
    assert report["by_severity"]["critical"]["ack_sla_missed"] == 0
    assert report["postmortems"] == {"required": 1, "written": 0}  # by the rule: critical


def test_the_table_for_people_names_every_figure(history: Store) -> None:
    lines = report_lines(_report(history, T0, T0 + 50_000))
    text = "\n".join(lines)
    assert lines[0].endswith(": 5 (1 unresolved)")
    assert any(line.split()[:6] == ["SEV-1", "critical", "2", "2m", "0s", "1h"] for line in lines), text
    assert "Heals: 2 of 3 succeeded (67%)" in text and "Postmortems: 1 written of 2 required" in text
    assert "MTTR < 1h for SEV-1: MISSED (1h 10m)" in text and "MTTA < 5m for SEV-1: met (2m 0s)" in text


# -- config --------------------------------------------------------------------------------------


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("checks: []\nnotifiers: []\n" + text)
    return path


def test_targets_default_to_the_practice_and_may_be_replaced(tmp_path: Path) -> None:
    assert [(t.severity, t.goals()) for t in load_config(_config(tmp_path, ""), {}).report.targets] == [
        ("critical", [("mtta", 300.0), ("mttr", 3600.0)]), ("high", [("mtta", 900.0), ("mttr", 14400.0)])]
    config = load_config(_config(tmp_path, "report: {targets: [{severity: SEV-3, mttr: 8h, mttd: 2m}]}\n"), {})
    assert [(t.severity, t.goals()) for t in config.report.targets] == [("medium", [("mttr", 28800.0), ("mttd", 120.0)])]


def test_bad_targets_are_located_errors(tmp_path: Path) -> None:
    text = (
        "report:\n  targets:\n    - {severity: critical, mtta: 5}\n    - {severity: high}\n"
        "    - {severity: urgent, mttr: 1h}\n  target: []\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, text), {})
    errors = info.value.errors
    assert "report.targets[0].mtta: invalid duration 5 (a unit is required, e.g. '5s')" in errors
    assert "report.targets[1]: give at least one of mtta, mttr, mttd" in errors
    assert any(e.startswith("report.targets[2].severity: invalid severity 'urgent'") for e in errors), errors
    assert "report.target: unknown key (did you mean 'targets'?)" in errors
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, "report: {targets: [{severity: high, mtta: 1m}, {severity: SEV-2, mttr: 1h}]}\n"),
                    {})
    assert info.value.errors == ["report.targets: severity high twice (targets[0] and [1])"]


# -- the API route -------------------------------------------------------------------------------


async def test_the_route_needs_the_token_refuses_a_bad_since_and_reports_the_store(
    history: Store, tmp_path: Path
) -> None:
    daemon = SimpleNamespace(store=history, config=load_config(_config(tmp_path, ""), {}))
    app = create_app(agent_name="t", token="rep0rt-t0ken", health=Facts(), board=Board(), incidents=Reader(),
                     deliveries=Desk(), reports=_Reports(daemon), clock=lambda: T0 + 50_000)  # type: ignore[arg-type]
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        refused = await client.get("/api/reports/incidents")
        assert refused.status == 401
        auth = {"Authorization": "Bearer rep0rt-t0ken"}
        for bad in ("30", "thirty", "0d", "1y", "99999d", ""):
            answer = await client.get("/api/reports/incidents", params={"since": bad}, headers=auth)
            body = await answer.json()
            assert answer.status == 400 and body["error"]["code"] == "bad_parameter", (bad, body)
            assert body["error"]["field"] == "since"
        answer = await client.get("/api/reports/incidents", params={"since": "14h"}, headers=auth)
        report = await answer.json()
    assert answer.status == 200
    assert report["total"] == 5 and report["by_severity"]["critical"]["mttr_s"] == 4_200.0  # 14 h back: not f0
    assert json.dumps(report)  # plain JSON


async def test_without_a_report_source_the_route_is_not_found() -> None:
    app = create_app(agent_name="t", token=None, health=Facts(), board=Board(), incidents=Reader(), deliveries=Desk())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answer = await client.get("/api/reports/incidents")
        assert answer.status == 404 and (await answer.json())["error"]["code"] == "not_found"
