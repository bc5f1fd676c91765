"""The value types a config model is built from, so every plugin spells a duration or a port alike.

A check or notifier that brings its own config model (next to its code, in ``checks/`` or
``actions/``) builds it from these: ``ConfigModel`` as the base, ``Duration``, ``Name``, ``Port``
and the rest for fields, ``Secret`` to mark a value that must never be shown, and the
validation-context helpers for paths relative to the config file. Each type's error text is part
of the config contract (README, "Errors"), so it is written here once.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any

from agent import incidents
from agent.config.model import After, Before, ConfigModel, FieldSpec, KeyedError, Secret, context
from agent.durations import format_duration, parse_duration
from agent.sizes import parse_size

__all__ = [
    "SEVERITIES",
    "After",
    "Before",
    "ConfigModel",
    "KeyedError",
    "Count",
    "Duration",
    "MAX_COUNT",
    "MAX_DURATION",
    "HttpHeaders",
    "HttpUrl",
    "Inherited",
    "Name",
    "NonEmptyStr",
    "NonNegativeCount",
    "NonNegativeFloat",
    "Percent",
    "Port",
    "PositiveDuration",
    "Secret",
    "Severity",
    "Size",
    "absolute",
    "base_dir",
    "context",
    "empty_is_none",
    "is_secret",
    "lower",
    "one_credential",
    "shown_number",
    "state_dir",
    "upper",
]

SEVERITIES = incidents.SEVERITIES  # one list: the incident engine owns severities


def is_secret(field: FieldSpec) -> bool:
    return any(item is Secret for item in field.metadata)


# --- durations ---------------------------------------------------------------------------------


class Inherited(float):
    """A duration taken from ``defaults:`` (already validated), as opposed to one written on the check.

    The timeout rule needs the difference: an inherited timeout longer than the interval is
    clamped, an explicit one is a mistake.
    """


MAX_DURATION = 3650 * 86400.0
"""Longest duration taken (10 years): longer ones overflow timers and socket timeouts at run time."""


def _seconds(value: Any) -> float:
    if isinstance(value, Inherited):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        raise ValueError(f"invalid duration {value!r} (a unit is required, e.g. '{value}s')")
    seconds = parse_duration(value)
    if not seconds <= MAX_DURATION:
        raise ValueError(f"must be at most {format_duration(MAX_DURATION)}")
    return seconds


def _positive_seconds(value: Any) -> float:
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


Duration = Annotated[float, Before(_seconds)]
PositiveDuration = Annotated[float, Before(_positive_seconds)]


# --- names, numbers, words ---------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        if not value:
            raise ValueError("must not be empty")
        raise ValueError(f"invalid name {value!r} (use letters, digits, '_', '.' and '-')")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads `true` as 1: a port or a count of `true` is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true/false")
    return value


MAX_COUNT = 1_000_000
"""Largest count taken (results kept, restarts, passing runs, checks at a time): larger ones are
mistakes, and past 2**63 the store cannot even hold them."""


def shown_number(value: int) -> str:
    """A number as an error message quotes it: in full unless it is absurdly long."""
    if abs(value) < 10**30:
        return str(value)
    return f"a number of about {int(abs(value).bit_length() * math.log10(2)) + 1} digits"


def _count_range(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more, got {shown_number(value)}")
    if value > MAX_COUNT:
        raise ValueError(f"must be at most {MAX_COUNT}, got {shown_number(value)}")
    return value


def _port_range(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be between 1 and 65535, got {shown_number(value)}")
    return value


_SEVERITY_ALIASES = {f"sev-{n}": name for n, name in enumerate(SEVERITIES, start=1)}


def _severity(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in SEVERITIES:
            return key
        if key in _SEVERITY_ALIASES:
            return _SEVERITY_ALIASES[key]
    raise ValueError(f"invalid severity {value!r} (expected one of: {', '.join(SEVERITIES)}, or SEV-1 to SEV-4)")


def _http_url(value: str) -> str:
    # The value is never echoed: webhook URLs (Slack's, for one) are secrets themselves.
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("expected an http:// or https:// URL")
    return value


def lower(value: Any) -> Any:
    """Before-validator: accept any case for a word from a fixed list."""
    return value.strip().lower() if isinstance(value, str) else value


def upper(value: Any) -> Any:
    """Before-validator: accept any case for a word written upper-case (an HTTP method)."""
    return value.strip().upper() if isinstance(value, str) else value


def empty_is_none(value: Any) -> Any:
    """Before-validator: an empty string means "not set".

    So `token: ${LIFEGUARD_API_TOKEN:-}` means "no token" rather than "the empty token".
    """
    return None if isinstance(value, str) and not value.strip() else value


def _count_or_zero(value: int) -> int:
    if value < 0:
        raise ValueError(f"must be 0 or more, got {shown_number(value)}")
    if value > MAX_COUNT:
        raise ValueError(f"must be at most {MAX_COUNT}, got {shown_number(value)}")
    return value


def _number(value: Any) -> Any:
    # A threshold of `true` or `.nan` is a mistake: every comparison with it would be false.
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value:g}")
    return value


def _percent_range(value: float) -> float:
    if not 0 <= value <= 100:
        raise ValueError(f"must be between 0 and 100, got {value:g}")
    return value


Name = Annotated[str, After(_name)]
NonEmptyStr = Annotated[str, After(_non_empty)]
Count = Annotated[int, Before(_no_bool), After(_count_range)]
Port = Annotated[int, Before(_no_bool), After(_port_range)]
NonNegativeCount = Annotated[int, Before(_no_bool), After(_count_or_zero)]
NonNegativeFloat = Annotated[float, Before(_number), After(_non_negative)]
Percent = Annotated[float, Before(_number), After(_percent_range)]
"""A percentage, 0 to 100."""
Size = Annotated[int, Before(parse_size)]
"""Bytes, written with a unit: ``500MB``, ``1GiB`` (``agent.sizes``)."""
Severity = Annotated[str, Before(_severity)]  # one of SEVERITIES (agent.incidents owns the list)
HttpUrl = Annotated[str, After(_http_url)]


# --- HTTP headers ------------------------------------------------------------------------------

# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Control characters other than tab: HTTP clients refuse them in a value (header injection).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _http_headers(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        # Reported at the header's own key; its value is never quoted (it is often a credential).
        if not _TOKEN.fullmatch(name):
            raise KeyedError(name, "invalid header name (use letters, digits and -)")
        if _CONTROL.search(text):
            raise KeyedError(name, "the value contains a control character such as a line break (not shown)")
    return value


HttpHeaders = Annotated[dict[str, str], After(_http_headers)]


def one_credential(url: str | None, headers: dict[str, str]) -> dict[str, str]:
    """``headers``, unless one is an ``Authorization`` header while ``url`` carries a user name or
    password: aiohttp refuses every request that has both. For a field validator of ``headers``."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url or "")
    except ValueError:
        return headers
    if parts.username is None and parts.password is None:
        return headers
    for name in headers:
        if name.lower() == "authorization":
            raise KeyedError(name, "cannot go with a user name or password in url (every request would fail)")
    return headers


# --- validation context ------------------------------------------------------------------------


def base_dir() -> Path:
    """The folder relative paths are relative to: the config file's, else the working folder."""
    return Path(context().get("base_dir") or Path.cwd())


def state_dir() -> Path:
    """``agent.state_dir`` as resolved, for defaults that live in it."""
    found = context().get("state_dir")
    return Path(found) if found else base_dir() / "state"


def absolute(path: str | Path, base: Path) -> Path:
    """``path`` made absolute against ``base``, with ``~`` expanded."""
    # normpath, not resolve(): keep the user's symlinks as written.
    return Path(os.path.normpath(base / Path(path).expanduser()))
