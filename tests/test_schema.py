"""The incident payload schema: valid itself, accepts a real-shaped event, rejects broken ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "agent" / "schemas" / "incident-v1.schema.json"
T = "2026-11-24T03:12:42.123Z"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def example() -> dict[str, Any]:
    return {
        "schema": "lifeguard.incident/v1",
        "event_id": "evt_01JDQ4Z8M3X5V7B9N1P3R5T7W9",
        "event": "incident.opened",
        "sequence": 1,
        "occurred_at": T,
        "agent": {"name": "web-01", "version": "0.1.0"},
        "reason": None,
        "incident": {
            "id": "inc_01JDQ4Z8M3X5V7B9N1P3R5T7W9",
            "check": "api",
            "check_type": "http",
            "target": "http://127.0.0.1:8080/health",
            "container": "api",
            "status": "open",
            "severity": "critical",
            "sev": "SEV-1",
            "title": "api failing: HTTP 500",
            "opened_at": T,
            "resolved_at": None,
            "resolve_reason": None,
            "heal": {"restarts": 1, "max_restarts": 3, "last_result": "succeeded"},
            "timeline": [{"at": T, "kind": "opened", "message": "api failing: HTTP 500"}],
        },
        "evidence": {
            "phase": "opened",
            "collected_at": T,
            "checks": [{"at": T, "ok": False, "latency_ms": 12.3, "message": "HTTP 500"}],
            "response": {
                "url": "http://127.0.0.1:8080/health",
                "status": 500,
                "headers": {"Content-Type": "text/plain"},
                "body": "boom",
                "body_truncated": False,
            },
            "container": {
                "name": "api",
                "id": "3f2a9c",
                "image": "local/api:1",
                "state": {"Status": "running", "ExitCode": 0},
                "logs": ["starting", "error: db down"],
            },
            "host": {
                "hostname": "web-01",
                "cpu_percent": 3.0,
                "load_avg": [0.1, 0.1, 0.1],
                "memory": {"total": 8_000_000_000, "percent": 41.0},
                "disk": [{"path": "/", "percent": 55.0}],
                "top_processes": [{"pid": 1, "name": "init", "cpu_percent": 0.0}],
            },
            "url": "http://127.0.0.1:9810/api/incidents/inc_01JDQ4Z8M3X5V7B9N1P3R5T7W9/evidence",
        },
    }


def errors(validator: Draft202012Validator, payload: dict[str, Any]) -> list[str]:
    return [error.message for error in validator.iter_errors(payload)]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "lifeguard.incident/v1"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_top_level_and_incident_field_is_documented() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    incident = schema["$defs"]["incident"]["properties"]
    undocumented = [name for name, spec in {**schema["properties"], **incident}.items() if "description" not in spec]
    # incident and evidence are documented in their $defs.
    assert undocumented == ["incident", "evidence"]


def test_full_example_validates(validator: Draft202012Validator) -> None:
    assert errors(validator, example()) == []


def test_resolved_event_without_evidence_or_heal_validates(validator: Draft202012Validator) -> None:
    payload = example()
    payload["event"] = "incident.resolved"
    payload["sequence"] = 4
    payload["incident"].update(status="resolved", resolved_at=T, resolve_reason="check passing", heal=None, container=None)
    payload["evidence"] = {"phase": None, "collected_at": None, "checks": [], "url": "http://127.0.0.1:9810/x"}
    assert errors(validator, payload) == []


def test_a_section_may_be_an_error_instead(validator: Draft202012Validator) -> None:
    payload = example()
    payload["evidence"]["container"] = {"error": "docker engine unreachable"}
    payload["evidence"]["host"] = None
    assert errors(validator, payload) == []


def test_unknown_fields_are_allowed_for_forward_compatibility(validator: Draft202012Validator) -> None:
    payload = example()
    payload["tags"] = ["prod"]
    payload["incident"]["acknowledged_by"] = "alice"
    payload["incident"]["timeline"].append({"at": T, "kind": "acknowledged", "message": "ack", "by": "alice"})
    assert errors(validator, payload) == []


def test_escalated_with_reason_validates(validator: Draft202012Validator) -> None:
    payload = example()
    payload.update(event="incident.escalated", reason="heal_exhausted")
    assert errors(validator, payload) == []


@pytest.mark.parametrize(
    ("label", "breaks", "where"),
    [
        ("bad severity", lambda p: p["incident"].update(severity="urgent"), "incident.severity"),
        ("missing incident.id", lambda p: p["incident"].pop("id"), "incident"),
        ("escalated without reason", lambda p: p.update(event="incident.escalated", reason=None), "reason"),
        ("unknown event", lambda p: p.update(event="incident.exploded"), "event"),
        ("wrong schema", lambda p: p.update(schema="lifeguard.incident/v2"), "schema"),
        ("sequence 0", lambda p: p.update(sequence=0), "sequence"),
        ("sev out of range", lambda p: p["incident"].update(sev="SEV-5"), "incident.sev"),
        ("time without Z", lambda p: p.update(occurred_at="2026-11-24T03:12:42.123+00:00"), "occurred_at"),
        ("time without ms", lambda p: p["incident"].update(opened_at="2026-11-24T03:12:42Z"), "incident.opened_at"),
        ("impossible time", lambda p: p.update(occurred_at="2026-13-24T03:12:42.123Z"), "occurred_at"),
        ("resolved without resolved_at", lambda p: p["incident"].update(status="resolved"), "incident.resolved_at"),
        ("resolved event, open incident", lambda p: p.update(event="incident.resolved"), "incident.status"),
        ("bad heal result", lambda p: p["incident"]["heal"].update(last_result="maybe"), "incident.heal"),
        ("bad timeline kind", lambda p: p["incident"]["timeline"][0].update(kind="Heal Done"), "incident.timeline.0.kind"),
        ("bad evidence phase", lambda p: p["evidence"].update(phase="later"), "evidence.phase"),
        ("missing evidence url", lambda p: p["evidence"].pop("url"), "evidence"),
        ("section neither object nor null", lambda p: p["evidence"].update(host="web-01"), "evidence.host"),
    ],
)
def test_broken_payload_fails_where_it_is_broken(
    validator: Draft202012Validator, label: str, breaks: Any, where: str
) -> None:
    payload = copy.deepcopy(example())
    breaks(payload)
    paths = [".".join(map(str, error.absolute_path)) for error in validator.iter_errors(payload)]
    assert paths == [where], label
