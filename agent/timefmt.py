"""The one way the agent writes a moment: ISO-8601 UTC with milliseconds and ``Z``.

Payloads, evidence and the API all show times, and a receiver comparing two of them should
never have to parse two formats.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC with milliseconds and ``Z``; None stays None."""
    if ts is None:
        return None
    return iso_datetime(datetime.fromtimestamp(ts, UTC))


def iso_datetime(moment: datetime) -> str:
    """An aware datetime as ISO-8601 UTC with milliseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
