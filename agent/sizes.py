"""Sizes as the config writes them ("500MB", "1.5GiB", "64KiB") and back.

Kept apart from ``agent.config`` (as ``agent.durations`` is) so check messages can format a size
without importing the config layer. A unit is always required: a bare ``500`` could be bytes or
megabytes, and is rejected rather than guessed. ``KB``/``MB``/``GB``/``TB`` are powers of 1000,
``KiB``/``MiB``/``GiB``/``TiB`` powers of 1024; units are read in any case.
"""

from __future__ import annotations

import math
import re

UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]+)")
_SPELLED = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
# Largest first, so 1500000 bytes reads "1.5 MB".
_FORMAT_UNITS = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))


def parse_size(value: object) -> int:
    """Bytes in a size string; ``ValueError`` for anything else, bare numbers included."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        raise ValueError(f"invalid size {value!r} (a unit is required, e.g. '{value}MB')")
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    unit = UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        raise ValueError(f"invalid size {shown!r} (a number and one of {_SPELLED}, e.g. '500MB')")
    return round(float(match.group(1)) * unit)


def format_size(size: float) -> str:
    """``size`` bytes for people: ``612.3 MB``, ``512 B`` (decimal units, one decimal at most)."""
    for unit, scale in _FORMAT_UNITS:
        if abs(size) >= scale:
            shown = f"{size / scale:.1f}".removesuffix(".0")
            return f"{shown} {unit}"
    return f"{round(size)} B"
