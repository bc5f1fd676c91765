"""Routes pick a check's notifiers when the config loads; filters pick a notifier's events. Pure,
plus the config errors that point at a route that cannot work, and one end to end through the engine."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.routing import NotifierFilter, recipients

NOTIFIERS = """
notifiers:
  - {name: pager, type: file, path: pager.jsonl}
  - {name: chat, type: file, path: chat.jsonl}
  - {name: audit, type: file, path: audit.jsonl}
"""


def load(tmp_path: Path, text: str):
    (tmp_path / "config.yaml").write_text(textwrap.dedent(text) + NOTIFIERS)
    return load_config(tmp_path / "config.yaml", {})


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.errors


CHECKS = """
defaults: {notify: [audit]}
checks:
  - {name: api, type: tcp, host: h, port: 1, severity: SEV-1, tags: [payments, edge]}
  - {name: db, type: tcp, host: h, port: 2, severity: high, container: pg}
  - {name: cron, type: tcp, host: h, port: 3, severity: low}
  - {name: own, type: tcp, host: h, port: 4, severity: critical, notify: [chat]}
"""


def test_the_first_matching_route_decides_and_no_match_means_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, CHECKS + """
routes:
  - {match: {severity: [critical]}, notify: [pager]}
  - {match: {container: pg}, notify: [chat]}
  - {match: {severity: [critical, high]}, notify: [audit]}
""")
    assert {c.name: c.notify for c in config.checks} == {
        "api": ["pager"], "db": ["chat"], "cron": ["audit"], "own": ["chat"]}


def test_continue_adds_the_next_matching_routes(tmp_path: Path) -> None:
    config = load(tmp_path, CHECKS + """
routes:
  - {match: {tags: [payments]}, notify: [pager], continue: true}
  - {match: {check: [api, db]}, notify: [chat, pager]}
  - {match: {}, notify: [audit]}
""")
    assert config.check("api").notify == ["pager", "chat"]
    assert config.check("db").notify == ["chat", "pager"]
    assert config.check("cron").notify == ["audit"]  # an empty match matches every check


def test_all_given_match_fields_must_hold(tmp_path: Path) -> None:
    config = load(tmp_path, CHECKS + """
routes:
  - {match: {severity: critical, tags: [edge]}, notify: [pager]}
""")
    assert (config.check("api").notify, config.check("db").notify) == (["pager"], ["audit"])


def test_route_mistakes_are_reported_with_their_path(tmp_path: Path) -> None:
    assert errors(tmp_path, CHECKS + """
routes:
  - {match: {severity: [sev-9]}, notify: [pager]}
  - {match: {check: [api]}, notify: [pagr]}
  - {match: {check: [nope]}, notify: [chat]}
  - {match: {tags: [payments]}, notify: []}
  - {match: {checks: [api]}, notify: [chat]}
  - {match: {container: pg, severity: low}, notify: [chat]}
""") == [
        "routes[0].match.severity[0]: invalid severity 'sev-9' (expected one of: critical, high, medium, low, or SEV-1 to SEV-4)",
        "routes[1].notify: no notifier named 'pagr' (known: pager, chat, audit)",
        "routes[2].match: matches none of the configured checks",
        "routes[3].notify: must name at least one notifier (a route that sends nowhere)",
        "routes[4].match.checks: unknown key (did you mean 'check'?)",
        "routes[5].match: matches none of the configured checks",
    ]


def test_a_notifier_event_filter_takes_known_short_names(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("notifiers:\n  - {name: n, type: file, events: [opend, resolved], min_severity: SEV-2}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "c.yaml", {})
    from agent.routing import EVENT_NAMES

    assert caught.value.errors == [
        f"notifiers[0].events: unknown event 'opend' (did you mean 'opened'? expected some of: {', '.join(EVENT_NAMES)})"]
    assert list(EVENT_NAMES)[:6] == ["opened", "heal_attempted", "heal_succeeded", "heal_failed", "escalated", "resolved"]


@pytest.mark.parametrize(("events", "min_severity", "event", "severity", "wanted"), [
    (None, None, "incident.heal_failed", "low", True),
    (["opened", "resolved"], None, "incident.opened", "low", True),
    (["opened", "resolved"], None, "incident.heal_attempted", "critical", False),
    (None, "high", "incident.opened", "critical", True),
    (None, "high", "incident.opened", "high", True),
    (None, "high", "incident.opened", "medium", False),
])
def test_a_notifier_takes_only_its_events_of_its_severities(events, min_severity, event, severity, wanted) -> None:
    assert NotifierFilter.of(events, min_severity).wants(event, severity) is wanted


def test_recipients_keep_the_check_order_and_drop_what_filters_refuse() -> None:
    filters = {"pager": NotifierFilter.of(["opened", "resolved"], "high")}
    assert recipients(["chat", "pager"], filters, "incident.opened", "critical") == ["chat", "pager"]
    assert recipients(["chat", "pager"], filters, "incident.heal_failed", "critical") == ["chat"]
    assert recipients(["chat", "pager"], filters, "incident.opened", "low") == ["chat"]


async def test_the_engine_writes_each_event_only_for_the_notifiers_that_take_it(tmp_path: Path) -> None:
    from agent.engine import Engine
    from agent.evidence import EvidenceCollector
    from agent.store import Store
    from checks import CheckContext, build_check
    from checks.base import CheckResult

    (tmp_path / "config.yaml").write_text(textwrap.dedent("""
        checks:
          - {name: db, type: tcp, host: 127.0.0.1, port: 9, open_after: 0s, resolve_after: 1, severity: medium}
        notifiers:
          - {name: pager, type: file, min_severity: high}
          - {name: chat, type: file, events: [resolved]}
          - {name: audit, type: file}
    """))
    config = load_config(tmp_path / "config.yaml", {})
    store = Store(tmp_path / "lifeguard.db")
    await store.run(store.open)
    try:
        engine = Engine(store, [build_check(c, CheckContext()) for c in config.checks],
                        evidence=EvidenceCollector(None, tmp_path), clock=lambda: 1000.0,
                        notifier_filters={n.name: NotifierFilter.of(n.events, n.min_severity) for n in config.notifiers})
        await engine.restore()
        await engine.on_result(CheckResult("db", False, 1000.0, 0.001, "refused"))
        await engine.on_result(CheckResult("db", True, 1001.0, 0.001, "connected"))
        await engine.drain(5)
        rows = await store.run(store.outbox.rows)
        assert [(r["event"], r["notifier"]) for r in rows] == [
            ("incident.opened", "audit"), ("incident.resolved", "chat"), ("incident.resolved", "audit")]
    finally:
        await store.aclose()
