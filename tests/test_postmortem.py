"""Postmortem drafts: the facts the engine stores for them, the draft's content, its template (the
shipped one, a custom one, a broken one located), and the writer: once, atomically, after the
resolve, again at the next start when it is missing, never breaking the resolve."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.config import ConfigError, load_config
from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.postmortem import (
    LOG_LINES,
    PostmortemWriter,
    TemplateProblem,
    draft_context,
    load_template,
    render,
    render_draft,
    write_draft,
)
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.tcp import TcpCheckConfig


@pytest.fixture
def store(running_store: Store) -> Store:
    return running_store


def engine_with(store: Store, tmp_path: Path, now: dict[str, float], severity: str = "critical", **kw: Any) -> Engine:
    cfg = TcpCheckConfig.model_validate(dict(name="db", type="tcp", host="127.0.0.1", port=9, open_after="0s", resolve_after=2,
                         notify=["ops"], severity=severity, tags=["payments"]))
    return Engine(store, [build_check(cfg, CheckContext())], evidence=EvidenceCollector(None, tmp_path),
                  notify_all=["ops"], clock=lambda: now["t"], **kw)


def settings(folder: Path, template: Path | None = None) -> Any:
    """The parts of a ``Config`` the writer reads."""
    check = SimpleNamespace(name="db", group=None, tags=["payments"])
    return SimpleNamespace(agent=SimpleNamespace(postmortem_dir=folder, postmortem_template=template), checks=[check])


async def fail_then_recover(engine: Engine, store: Store, now: dict[str, float], fails: int = 2) -> str:
    for ok in [False] * fails + [True, True]:
        now["t"] += 10
        await engine.on_result(CheckResult("db", ok, now["t"] - 1, 0.001, "ok" if ok else "connection refused"))
    incident_id: str = (await store.run(store.incidents.list, None, 1))[0]["id"]
    await engine.evidence_ready(incident_id, "resolved")
    return incident_id


# -- what the engine stores -------------------------------------------------------------------------


async def test_the_engine_stores_when_failing_began_and_whether_a_postmortem_is_required(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_with(store, tmp_path, now)
    incident_id = await fail_then_recover(engine, store, now)
    row = await store.run(store.incidents.row, incident_id)
    assert row["failing_since"] == 1009.0 and row["opened_at"] == 1010.0  # the first failing result's start
    assert row["postmortem_required"] == 1 and row["postmortem_path"] is None  # critical: required
    incident = await store.run(store.incidents.get, incident_id)
    assert incident["postmortem"] == {"required": True, "path": None}
    await engine.drain(5)


async def test_a_short_medium_incident_requires_none_and_a_long_one_does(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_with(store, tmp_path, now, severity="medium", postmortem_after=25.0)
    short = await fail_then_recover(engine, store, now, fails=1)  # opened 1010, resolved 1030: 20 s
    assert (await store.run(store.incidents.get, short))["postmortem"]["required"] is False
    long = await fail_then_recover(engine, store, now, fails=3)  # opened 1040, resolved 1080: 40 s > 25 s
    assert (await store.run(store.incidents.row, long))["postmortem_required"] == 1
    await engine.drain(5)


# -- the writer --------------------------------------------------------------------------------------


async def test_a_required_postmortem_is_written_once_the_incident_resolves(store, tmp_path) -> None:
    now = {"t": 1000.0}
    folder = tmp_path / "postmortems"
    writer: PostmortemWriter | None = None
    engine = engine_with(store, tmp_path, now, on_resolved=lambda i: writer.resolved(i) if writer else None)
    writer = PostmortemWriter(store, engine.record_postmortem, lambda: settings(folder),
                              evidence_ready=engine.evidence_ready, clock=lambda: now["t"])
    incident_id = await fail_then_recover(engine, store, now)
    await writer.drain(10)
    draft = folder / f"{incident_id}.md"
    text = draft.read_text()
    assert text.startswith("# Postmortem: db failing: connection refused\n")
    assert "| Severity | SEV-1 (critical) |" in text and "| Downtime | 30s |" in text
    assert "| opened | connection refused |" in text and "| resolved | recovered: 2 passing results in a row |" in text
    assert "- Services affected: payments" in text and "- Checks failing: db (`127.0.0.1:9`)" in text
    assert stat.S_IMODE(draft.stat().st_mode) == 0o600 and [p.name for p in folder.iterdir()] == [draft.name]
    incident = await store.run(store.incidents.get, incident_id)
    assert incident["postmortem"] == {"required": True, "path": str(draft)}
    assert incident["timeline"][-1]["kind"] == "postmortem" and str(draft) in incident["timeline"][-1]["message"]
    assert await store.run(store.events.of_incident, incident_id)  # the record sent nothing new:
    assert [e.kind for e in await store.run(store.events.of_incident, incident_id)] == [
        "incident.opened", "incident.resolved"]
    await engine.drain(5)


async def test_a_missing_draft_is_written_at_the_next_start_and_never_twice(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_with(store, tmp_path, now)  # no writer: as if the agent died right after the resolve
    incident_id = await fail_then_recover(engine, store, now)
    await engine.drain(5)
    assert await store.run(store.incidents.postmortems_missing) == [incident_id]
    folder = tmp_path / "postmortems"
    writer = PostmortemWriter(store, engine.record_postmortem, lambda: settings(folder))
    await writer.catch_up()
    await writer.drain(10)
    draft = folder / f"{incident_id}.md"
    assert draft.is_file() and await store.run(store.incidents.postmortems_missing) == []
    draft.write_text("edited by ann\n")
    await writer.catch_up()
    await writer.drain(10)
    assert await writer.write(incident_id) is None  # recorded: nothing to do
    assert draft.read_text() == "edited by ann\n"
    timeline = (await store.run(store.incidents.get, incident_id))["timeline"]
    assert [t["kind"] for t in timeline].count("postmortem") == 1


async def test_a_draft_already_on_disk_is_kept_and_recorded(store, tmp_path) -> None:
    now = {"t": 1000.0}
    engine = engine_with(store, tmp_path, now)
    incident_id = await fail_then_recover(engine, store, now)
    folder = tmp_path / "postmortems"
    folder.mkdir()
    (folder / f"{incident_id}.md").write_text("written before the agent was killed\n")
    path = await PostmortemWriter(store, engine.record_postmortem, lambda: settings(folder)).write(incident_id)
    assert path == folder / f"{incident_id}.md" and path.read_text() == "written before the agent was killed\n"
    assert (await store.run(store.incidents.get, incident_id))["postmortem"]["path"] == str(path)
    await engine.drain(5)


async def test_a_failed_write_is_logged_and_leaves_the_resolve_and_path_null(store, tmp_path) -> None:
    now = {"t": 1000.0}
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    writer: PostmortemWriter | None = None
    engine = engine_with(store, tmp_path, now, on_resolved=lambda i: writer.resolved(i) if writer else None)
    writer = PostmortemWriter(store, engine.record_postmortem, lambda: settings(blocker / "postmortems"))
    with capture_logs() as logs:
        incident_id = await fail_then_recover(engine, store, now)
        await writer.drain(10)
    incident = await store.run(store.incidents.get, incident_id)
    assert incident["status"] == "resolved" and incident["postmortem"] == {"required": True, "path": None}
    failed = [e for e in logs if e["event"] == "postmortem.failed"]
    assert len(failed) == 1 and failed[0]["incident_id"] == incident_id
    assert await store.run(store.incidents.postmortems_missing) == [incident_id]  # the next start tries again
    await engine.drain(5)


async def test_an_incident_resolved_by_hand_gets_its_draft_with_root_cause_and_action_items(store, tmp_path) -> None:
    now = {"t": 1000.0}
    folder = tmp_path / "pm"
    writer: PostmortemWriter | None = None
    engine = Engine(store, [], notify_all=["ops"], clock=lambda: now["t"],
                    on_resolved=lambda i: writer.resolved(i) if writer else None)
    writer = PostmortemWriter(store, engine.record_postmortem, lambda: settings(folder))
    opened = await engine.open_manual("Payments down", "critical", "ann", affected_services=["checkout"])
    now["t"] += 600
    await engine.post_update(opened["id"], "identified", "PSP outage | retries off", "ann")
    await engine.comment(opened["id"], "bob", "rotate the PSP key", internal=True)
    now["t"] += 1200
    await engine.resolve(opened["id"], "ann", root_cause="The PSP's certificate expired.",
                         solution="Renewed it.", follow_ups=["Alert 14 days before a certificate expires"])
    await writer.drain(10)
    text = (folder / f"{opened['id']}.md").read_text()
    assert "| Downtime | 30m 0s |" in text and "- Services affected: checkout" in text
    assert "## Root cause\n\nThe PSP's certificate expired." in text and "## Resolution\n\nRenewed it." in text
    assert "| 1 | Alert 14 days before a certificate expires | TODO | TODO | open |" in text
    assert "**identified** (ann): PSP outage | retries off" in text
    assert "status_update | identified: PSP outage \\| retries off (ann) |" in text  # a table cell stays one cell
    assert "bob (internal): rotate the PSP key" in text  # a postmortem is internal
    assert "## 5 Whys" in text and "## Lessons learned" in text


# -- the draft's content ------------------------------------------------------------------------------


def test_evidence_highlights_come_from_the_stored_bundle() -> None:
    incident = {"id": "inc_0123456789abcdef", "title": "api failing: HTTP 503", "severity": "high", "sev": "SEV-2",
                "status": "resolved", "check": "api", "target": "http://127.0.0.1:8080/health", "container": "api",
                "opened_at": "2026-11-18T11:00:00.000Z", "resolved_at": "2026-11-18T12:01:05.000Z", "timeline": []}
    bundle = {
        "collected_at": "2026-11-18T11:00:01.000Z",
        "checks": [{"ok": True, "message": "HTTP 200"}, {"ok": False, "message": "HTTP 503"}],
        "response": {"status": 503, "url": "http://127.0.0.1:8080/health"},
        "container": {"name": "api", "image": "api:2", "logs": [f"line {n}" for n in range(30)],
                      "state": {"status": "exited", "exit_code": 137, "oom_killed": True, "restart_count": 4}},
        "host": {"cpu_percent": 97.0, "memory": {"percent": 40.0}, "load_avg": [3.0, 2.0, 1.0],
                 "disk": [{"path": "/", "percent": 91.5}, {"path": "/var/lib/lifeguard", "percent": 10.0}]},
    }
    context = draft_context(incident, {"opened": bundle, "resolved": None}, generated_at=0.0, service="shop")
    highlights = context["evidence"]
    assert highlights["response"] == {"status": 503, "url": "http://127.0.0.1:8080/health"}
    assert highlights["container"]["exit_code"] == 137 and highlights["container"]["oom_killed"] is True
    assert highlights["logs"] == [f"line {n}" for n in range(30 - LOG_LINES, 30)]
    assert highlights["host"]["pressure"] == ["CPU 97%", "disk / 92%"]
    assert (context["downtime"], context["downtime_s"]) == ("1h 1m", 3665.0)
    assert context["impact"]["services"] == ["shop"] and context["impact"]["containers"] == ["api"]
    text = render(load_template(), context)
    assert "- The check's failing response: HTTP 503 from `http://127.0.0.1:8080/health`" in text
    assert "exit code 137, OOMKilled yes, restarts 4" in text and "under pressure: CPU 97%, disk / 92%" in text
    assert "```\nline 20\n" in text and "line 19" not in text


def test_write_draft_is_atomic_and_never_overwrites(tmp_path: Path) -> None:
    path, written = write_draft(tmp_path / "a" / "b", "inc_0123456789abcdef", "first\n")
    assert written and path.read_text() == "first\n" and os.listdir(path.parent) == [path.name]
    again, written = write_draft(tmp_path / "a" / "b", "inc_0123456789abcdef", "second\n")
    assert again == path and not written and path.read_text() == "first\n"
    with pytest.raises(ValueError):
        write_draft(tmp_path, "../escape", "x")


# -- templates ----------------------------------------------------------------------------------------


def config_with(tmp_path: Path, template: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"agent:\n  postmortem_template: {template}\n  postmortem_dir: drafts\nchecks: []\nnotifiers: []\n")
    return path


def test_a_custom_template_is_checked_at_load_and_used(tmp_path: Path) -> None:
    (tmp_path / "ours.md.j2").write_text("# {{ sev }} {{ title }}\n{% for t in timeline %}* {{ t.kind }}\n{% endfor %}")
    config = load_config(config_with(tmp_path, "ours.md.j2"), {})
    assert config.agent.postmortem_template == tmp_path / "ours.md.j2"  # relative to the config file
    assert config.agent.postmortem_dir == tmp_path / "drafts"
    incident = {"id": "inc_0123456789abcdef", "title": "Payments down", "severity": "critical", "sev": "SEV-1",
                "status": "resolved", "opened_at": "2026-11-18T11:00:00.000Z", "resolved_at": None,
                "timeline": [{"at": "2026-11-18T11:00:00.000Z", "kind": "opened", "message": "x"}]}
    text = render_draft(config.agent.postmortem_template, incident, None, generated_at=0.0)
    assert text == "# SEV-1 Payments down\n* opened\n"


def test_the_default_dir_is_in_state_dir(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent: {state_dir: /var/lib/lg}\nchecks: []\nnotifiers: []\n")
    assert load_config(path, {}).agent.postmortem_dir == Path("/var/lib/lg/postmortems")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("# {{ title }}\n\n{% for t in timeline %}\n{{ t.kind }\n", ":4: unexpected '}'"),
        ("# {{ title }}\n{{ severity_label }}\n", ":2: 'severity_label' is undefined"),
        ("# {{ title }}\n{% if true %}\n", ":2: Unexpected end of template."),
        ("{{ title | no_such_filter }}\n", ":1: No filter named 'no_such_filter'."),
    ],
)
def test_a_template_error_is_located_at_its_line(tmp_path: Path, source: str, problem: str) -> None:
    template = tmp_path / "broken.md.j2"
    template.write_text(source)
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, "broken.md.j2"), {})
    assert len(info.value.errors) == 1
    error = info.value.errors[0]
    assert error.startswith(f"agent.postmortem_template: {template}{problem.split(':', 2)[0]}"), error
    assert error.endswith(problem) or problem in error, error


def test_a_missing_template_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, "nowhere.j2"), {})
    assert info.value.errors == [f"agent.postmortem_template: {tmp_path / 'nowhere.j2'}: no such file"]
    with pytest.raises(TemplateProblem, match="not a file"):
        load_template(tmp_path)


def test_a_value_an_incident_lacks_renders_empty_rather_than_failing_the_draft(tmp_path: Path) -> None:
    template = tmp_path / "t.md.j2"
    template.write_text("exit {{ evidence.container.exit_code }} logs {{ evidence.logs | length }}\n")
    incident = {"id": "inc_0123456789abcdef", "title": "t", "severity": "low", "status": "open",
                "opened_at": "2026-11-18T11:00:00.000Z", "resolved_at": None}
    assert render_draft(template, incident, None, generated_at=0.0) == "exit  logs 0\n"  # no bundle kept


def test_migration_10_keeps_when_an_open_incidents_failing_began(tmp_path: Path) -> None:
    """A database of the schema before postmortems: its open incident's ``failing_since`` (kept in its
    state until now) becomes the column the report's MTTD reads; nothing is required or written yet."""
    import sqlite3

    from agent.store import migrations

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for number, _, script in migrations():
        if number >= 10:
            break
        db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    db.execute("INSERT INTO incidents (id, check_name, check_type, target, status, severity, title, opened_at, state)"
               " VALUES ('inc_000000000001aa', 'api', 'http', 'x', 'open', 'critical', 't', 100.0,"
               " '{\"failing_since\": 40.5, \"passing_streak\": 0}')")
    db.execute("INSERT INTO incidents (id, check_name, check_type, target, status, severity, title, opened_at, state,"
               " resolved_at) VALUES ('inc_000000000002aa', 'db', 'tcp', 'x', 'resolved', 'critical', 't', 100.0,"
               " '{\"failing_since\": null}', 200.0)")
    db.commit()
    db.close()
    store = Store(path)
    store.open()
    try:
        assert store.incidents.row("inc_000000000001aa")["failing_since"] == 40.5
        assert store.incidents.row("inc_000000000002aa")["failing_since"] is None
        assert store.incidents.postmortems_missing() == []  # an old resolved incident is not caught up
        assert store.incidents.get("inc_000000000002aa")["postmortem"] == {"required": True, "path": None}
    finally:
        store.close()
