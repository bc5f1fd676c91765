"""Durations as the config writes them ("500ms", "10s", "5m", "1h", "7d") and back.

Kept apart from ``agent.config`` so summaries and log lines can format a duration without
importing the config layer. A unit is always required: a bare ``10`` is ambiguous (seconds? minutes?)
and is rejected rather than guessed.
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Largest first, so 900 s reads "15m", not "900s".
_FORMAT_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(value: object) -> float:
    """Seconds in a duration string; ``ValueError`` for anything else, bare numbers included."""
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"invalid duration {value!r}")
    number, unit = match.groups()
    if unit == "ms":
        # Dividing keeps "100ms" == 0.1 exactly; multiplying by 0.001 would not.
        return float(number) / 1000
    return float(number) * _SECONDS_PER_UNIT[unit]


def format_duration(seconds: float) -> str:
    """The shortest exact duration string for ``seconds``: the inverse of ``parse_duration``."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{_trim(seconds * 1000)}ms"
    for unit, size in _FORMAT_UNITS:
        count = seconds / size
        if count >= 1 and _is_whole(count):
            return f"{round(count)}{unit}"
    return f"{_trim(seconds)}s"


def _is_whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


def _trim(x: float) -> str:
    return str(round(x)) if _is_whole(x) else f"{x:.6f}".rstrip("0").rstrip(".")
