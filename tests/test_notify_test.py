"""``lifeguard notify test NAME``: a marked test message through one notifier, end to end against a
real webhook receiver and a dead port; the test event itself, as the payload schema and chat see it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml

from actions.notifiers.message import build_message
from agent.trial import trial_notification
from tests.fixtures_agent import ROOT, SECRET, Receiver, free_port


def write_config(tmp_path: Path, notifiers: list[dict[str, Any]]) -> Path:
    path = tmp_path / "config.yaml"
    config = {"agent": {"name": "web-01", "state_dir": str(tmp_path / "state")}, "checks": [], "notifiers": notifiers}
    path.write_text(yaml.safe_dump(config))
    return path


async def notify_test(path: Path, name: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "notify", "test", name, "-c", str(path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_the_test_event_is_marked_for_people_and_valid_for_receivers(payload_schema: Any) -> None:
    from agent.payload import event_document

    notification = trial_notification("ops", "web-01", "http://127.0.0.1:9810/api/incidents/inc_1/evidence",
                                      1_795_000_000.0, "evt_1", "inc_1")
    message = build_message(notification)
    assert message.test and message.first_line == (
        "[TEST][SEV-4] Test message from Lifeguard to notifier ops: nothing is wrong")
    document = event_document(notification)
    payload_schema.validate(document)
    assert document["event"] == "notifier.test" and document["incident"]["sev"] == "SEV-4"


async def test_a_webhook_gets_the_signed_test_event_and_the_answer_is_printed(
    receiver: Receiver, tmp_path: Path, payload_schema: Any
) -> None:
    hook = {"name": "hook", "type": "webhook", "url": receiver.url, "secret": SECRET}
    path = write_config(tmp_path, [hook, {"name": "other", "type": "webhook", "url": receiver.url}])
    code, out, err = await notify_test(path, "hook")
    assert (code, out) == (0, "hook: delivered (HTTP 200)\n"), err
    assert len(receiver.requests) == 1 and receiver.requests[0]["verified"]  # signed as every event is
    event = receiver.events[0]
    payload_schema.validate(event)
    assert event["event"] == "notifier.test" and event["agent"]["name"] == "web-01"
    assert event["incident"]["title"] == "Test message from Lifeguard to notifier hook: nothing is wrong"
    assert receiver.requests[0]["headers"]["webhook-id"] == event["event_id"]
    assert not (tmp_path / "state").exists()  # no agent, no database: nothing touched

    receiver.status = 400
    code, out, err = await notify_test(path, "hook")
    assert (code, out) == (1, "hook: dead (HTTP 400: {})\n"), err


async def test_a_dead_port_is_not_delivered(tmp_path: Path) -> None:
    path = write_config(tmp_path, [{"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{free_port()}/x",
                                    "timeout": "2s"}])
    code, out, err = await notify_test(path, "hook")
    assert (code, out) == (1, "hook: retry (connection refused)\n"), err


async def test_an_unknown_name_or_a_bad_config_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/x"},
                                   {"name": "file", "type": "file"}])
    code, out, err = await notify_test(path, "slack")
    assert (code, out) == (2, "")
    assert err == "lifeguard: no notifier named 'slack' (known: hook, file)\n"

    path.write_text("notifiers: [{name: hook, type: webhook}]\n")
    code, out, err = await notify_test(path, "hook")
    assert code == 2 and out == "" and "notifiers[0].url" in err


async def test_the_test_message_passes_whatever_the_notifiers_filters_say(receiver: Receiver, tmp_path: Path) -> None:
    """A notifier that takes only resolved SEV-1 events still gets the (SEV-4, notifier.test) test."""
    hook = {"name": "hook", "type": "webhook", "url": receiver.url, "secret": SECRET, "events": ["resolved"],
            "min_severity": "critical"}
    code, out, err = await notify_test(write_config(tmp_path, [hook]), "hook")
    assert (code, out) == (0, "hook: delivered (HTTP 200)\n"), err
    assert receiver.events[0]["event"] == "notifier.test"
