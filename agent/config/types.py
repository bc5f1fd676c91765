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
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator
from pydantic.fields import FieldInfo

from agent import incidents
from agent.durations import format_duration, parse_duration
from agent.sizes import parse_size

__all__ = [
    "SEVERITIES",
    "ConfigModel",
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


class ConfigModel(BaseModel):
    """Base of every config model: frozen, strict about unknown keys, silent about input values."""

    # hide_input_in_errors: a rejected value may be a secret; messages quote only what is safe.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # `api:` or `interval:` left empty in YAML is null: treat it as not written.
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (v is None and k in cls.model_fields)}
        return data

    @classmethod
    def yaml_keys(cls, context: Mapping[str, Any]) -> list[str]:
        """The keys the model takes in the file (its fields, unless it says otherwise), for hints."""
        return list(cls.model_fields)


class _SecretMarker:
    """Field metadata: the value is a credential (logs mask it, reprs leave it out)."""

    def __repr__(self) -> str:
        return "Secret"


Secret: Final = _SecretMarker()
"""Put in a field's ``Annotated[...]`` metadata; ``agent.plugins.secret_values`` collects the field."""


def is_secret(field: FieldInfo) -> bool:
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


Duration = Annotated[float, BeforeValidator(_seconds)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_seconds)]


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


Name = Annotated[str, AfterValidator(_name)]
NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
Count = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_count_range)]
Port = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_port_range)]
NonNegativeCount = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_count_or_zero)]
NonNegativeFloat = Annotated[float, BeforeValidator(_number), AfterValidator(_non_negative)]
Percent = Annotated[float, BeforeValidator(_number), AfterValidator(_percent_range)]
"""A percentage, 0 to 100."""
Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written with a unit: ``500MB``, ``1GiB`` (``agent.sizes``)."""
Severity = Annotated[str, BeforeValidator(_severity)]  # one of SEVERITIES (agent.incidents owns the list)
HttpUrl = Annotated[str, AfterValidator(_http_url)]


# --- HTTP headers ------------------------------------------------------------------------------

# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Control characters other than tab: HTTP clients refuse them in a value (header injection).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _http_headers(value: dict[str, str]) -> dict[str, str]:
    from agent.config.errors import keyed_error  # errors imports this module

    for name, text in value.items():
        # Reported at the header's own key; its value is never quoted (it is often a credential).
        if not _TOKEN.fullmatch(name):
            raise keyed_error(name, "invalid header name (use letters, digits and -)")
        if _CONTROL.search(text):
            raise keyed_error(name, "the value contains a control character such as a line break (not shown)")
    return value


HttpHeaders = Annotated[dict[str, str], AfterValidator(_http_headers)]


def one_credential(url: str | None, headers: dict[str, str]) -> dict[str, str]:
    """``headers``, unless one is an ``Authorization`` header while ``url`` carries a user name or
    password: aiohttp refuses every request that has both. For a field validator of ``headers``."""
    from urllib.parse import urlsplit

    from agent.config.errors import keyed_error  # errors imports this module

    try:
        parts = urlsplit(url or "")
    except ValueError:
        return headers
    if parts.username is None and parts.password is None:
        return headers
    for name in headers:
        if name.lower() == "authorization":
            raise keyed_error(name, "cannot go with a user name or password in url (every request would fail)")
    return headers


# --- validation context ------------------------------------------------------------------------


def context(info: ValidationInfo) -> dict[str, Any]:
    """What ``load_config`` passes down to every validator (empty when a model is built directly)."""
    return info.context if isinstance(info.context, dict) else {}


def base_dir(info: ValidationInfo) -> Path:
    """The folder relative paths are relative to: the config file's, else the working folder."""
    return Path(context(info).get("base_dir") or Path.cwd())


def state_dir(info: ValidationInfo) -> Path:
    """``agent.state_dir`` as resolved, for defaults that live in it."""
    found = context(info).get("state_dir")
    return Path(found) if found else base_dir(info) / "state"


def absolute(path: str | Path, base: Path) -> Path:
    """``path`` made absolute against ``base``, with ``~`` expanded."""
    # normpath, not resolve(): keep the user's symlinks as written.
    return Path(os.path.normpath(base / Path(path).expanduser()))
