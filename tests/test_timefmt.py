"""Every time the agent writes is ISO-8601 UTC with milliseconds and ``Z``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agent.timefmt import iso, iso_datetime


def test_epoch_seconds_read_as_utc_with_milliseconds() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_700_000_000.1239) == "2023-11-14T22:13:20.123Z"


def test_no_time_stays_none() -> None:
    assert iso(None) is None


def test_a_datetime_in_any_offset_is_written_in_utc() -> None:
    moment = datetime(2024, 5, 1, 14, 30, 0, 456789, tzinfo=timezone(timedelta(hours=2)))
    assert iso_datetime(moment) == "2024-05-01T12:30:00.456Z"


def test_the_payload_module_still_offers_iso() -> None:
    from agent.payload import iso as payload_iso

    assert payload_iso is iso
