"""Log set-up: JSON lines off a terminal, console text on one, configured secrets masked, levels."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from agent import logging as lg


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_event_level_time_and_fields() -> None:
    out = io.StringIO()
    lg.configure("info", stream=out, json=True)
    structlog.get_logger("t").info("incident.opened", check="api", incident_id="inc_0123456789abcdef")
    (line,) = lines(out)
    event = json.loads(line)
    assert event["event"] == "incident.opened" and event["level"] == "info"
    assert event["check"] == "api" and event["incident_id"] == "inc_0123456789abcdef"
    assert event["timestamp"].endswith("Z")


def test_json_is_the_default_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    lg.configure("info", stream=out)
    structlog.get_logger("t").info("daemon.started")
    assert json.loads(lines(out)[0])["event"] == "daemon.started"


def test_console_output_is_text_not_json() -> None:
    out = io.StringIO()
    lg.configure("info", stream=out, json=False)
    structlog.get_logger("t").warning("delivery.retry", notifier="ops")
    (line,) = lines(out)
    assert "delivery.retry" in line and "notifier" in line and "ops" in line
    with pytest.raises(ValueError):
        json.loads(line)


def test_configured_secrets_are_masked_in_every_field() -> None:
    out = io.StringIO()
    lg.configure("info", stream=out, json=True, secrets=["whsec_S3cr3tValue", "t0ken-for-the-api"])
    structlog.get_logger("t").error(
        "delivery.dead", detail="401 for Authorization: Bearer t0ken-for-the-api", url="https://x/?k=whsec_S3cr3tValue"
    )
    text = out.getvalue()
    assert "whsec_S3cr3tValue" not in text and "t0ken-for-the-api" not in text
    event = json.loads(text)
    assert event["detail"] == "401 for Authorization: Bearer [redacted]"
    assert event["url"] == "https://x/?k=[redacted]"


def test_lines_below_the_level_are_not_written() -> None:
    out = io.StringIO()
    lg.configure("warning", stream=out, json=True)
    log = structlog.get_logger("t")
    log.info("check.failing")
    log.debug("check.completed")
    log.warning("evidence.late")
    assert [json.loads(line)["event"] for line in lines(out)] == ["evidence.late"]
