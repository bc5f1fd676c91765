"""Golden tests: a fixed event, rendered by ``payload.py`` and each notifier, against exact bytes.

The inputs go through the real code path (an incident written by the store, its event stored as
data, read back); the expected outputs are files in ``tests/golden/``. A change to what receivers
get shows up here as a diff of those files. To accept an intended change, run
``LIFEGUARD_UPDATE_GOLDEN=1 bash scripts/test.sh tests/test_payload.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from actions.notifiers.file import render_line
from actions.notifiers.webhook import render_json
from agent import payload
from agent.events import Notification
from agent.store import Change, Store

GOLDEN = Path(__file__).resolve().parent / "golden"
SCHEMA = Path(__file__).resolve().parent.parent / "agent" / "schemas" / "incident-v1.schema.json"
OPENED_AT = 1763953962.123  # 2025-11-24T03:12:42.123Z
BUNDLE = {
    "phase": "opened",
    "collected_at": "2025-11-24T03:12:42.180Z",
    "checks": [{"at": "2025-11-24T03:12:42.123Z", "ok": False, "latency_ms": 3.1, "message": "HTTP 500"}],
    "response": {"url": "http://127.0.0.1:8080/health", "status": 500, "headers": {"Content-Type": "text/plain"},
                 "body": "boom — ünïcode", "body_truncated": False},
    "container": None,
    "host": {"hostname": "web-01", "cpu_percent": 3.0},
    "not_in_v1": "dropped: only the documented keys are sent",
}


def check_golden(name: str, actual: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("LIFEGUARD_UPDATE_GOLDEN") == "1":
        path.write_bytes(actual)
    assert actual == path.read_bytes(), f"{name} differs from its golden file"


@pytest.fixture
def notification(tmp_path: Path) -> Notification:
    store = Store(tmp_path / "lifeguard.db", agent_info={"name": "web-01", "version": "0.1.0"})
    store.open()
    try:
        store.apply(Change(
            incident_id="inc_019ab5d2c7e8a1b2c3d4e5f6", at=OPENED_AT, notifiers=["ops"],
            create={"check_name": "api", "check_type": "http", "target": "http://127.0.0.1:8080/health",
                    "container": "api", "status": "open", "severity": "critical",
                    "title": "api failing: HTTP 500", "opened_at": OPENED_AT, "max_restarts": 3},
            state={"restarts": 1, "last_heal": "attempted"},
            timeline=[("opened", "HTTP 500"), ("heal_attempted", "restarting container 'api'")],
            events=[("incident.opened", None)],
            heal_attempt=("restart_container", "api"),
        ))
        [item] = store.outbox.due("ops", OPENED_AT + 1)
    finally:
        store.close()
    # The event id is random by design; pin it so the bytes are stable.
    event = replace(item.event, id="evt_019ab5d2c7e84f1a9c3b2d10")
    url = "http://127.0.0.1:9810/api/incidents/inc_019ab5d2c7e8a1b2c3d4e5f6/evidence"
    return Notification(event=event, evidence=BUNDLE, evidence_url=url)


def test_the_v1_document_is_the_golden_one_and_valid(notification: Notification) -> None:
    document = payload.event_document(notification)
    check_golden("incident-opened.v1.json", (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode())
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors(document)) == []


def test_the_webhook_body_is_the_golden_bytes(notification: Notification) -> None:
    check_golden("incident-opened.webhook.body", render_json(notification))


def test_the_file_line_is_the_golden_bytes(notification: Notification) -> None:
    line = render_line(notification)
    check_golden("incident-opened.file.jsonl", line)
    assert line.count(b"\n") == 1 and json.loads(line) == json.loads(render_json(notification))


def test_an_event_without_evidence_yet_carries_the_empty_bundle(notification: Notification) -> None:
    bare = Notification(event=notification.event, evidence=None, evidence_url="http://h/e")
    assert payload.event_document(bare)["evidence"] == {
        "phase": None, "collected_at": None, "checks": [], "response": None, "container": None, "host": None,
        "url": "http://h/e"}


def test_event_fields_are_carried_at_the_top_level(notification: Notification) -> None:
    event = replace(notification.event, fields={"changes": ["severity"]})
    document = payload.event_document(Notification(event=event, evidence=None, evidence_url="u"))
    assert document["changes"] == ["severity"] and list(document)[-1] == "evidence"
