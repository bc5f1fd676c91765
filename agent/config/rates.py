"""The keys of a check (and of ``defaults:``) about its recent results: ``open_when``, ``baseline``
and ``flapping``. Parsed here, once, at load, so a mistake is an error with its path; the rules
themselves are ``agent.rates``, ``agent.flapping`` and ``agent.baseline``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from agent.config.model import After, Before, KeyedError
from agent.config.types import ConfigModel, Count, PositiveDuration
from agent.durations import format_duration
from agent.flapping import FlapRule
from agent.rates import parse_rate_rule

__all__ = ["BaselineConfig", "FlappingConfig", "OpenWhen", "MAX_BASELINE_WINDOW"]

MAX_BASELINE_WINDOW = 86400.0
"""Longest baseline window: a day of minutes is 1,440 summaries per check in memory and on disk."""


def _rate_rule(value: str) -> str:
    return str(parse_rate_rule(value))  # normalized: "error_rate > 10% over 5m"


OpenWhen = Annotated[str, After(_rate_rule)]
"""``error_rate > N% over DURATION`` (or ``>=``), kept as its normalized text."""


_PERCENT = "expected a percentage such as 50 or '50%'"


def _percent(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{_PERCENT}, not true/false")
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(_PERCENT) from None
    return value


def _percent_range(value: float) -> float:
    if not 0 <= value <= 100:
        raise ValueError(f"must be a percentage between 0 and 100, got {value:g}")
    return value


Percent = Annotated[float, Before(_percent), After(_percent_range)]


def _at_least_two(value: int) -> int:
    if value < 2:
        raise ValueError(f"must be 2 or more (state changes weighed), got {value}")
    if value > 1000:
        raise ValueError(f"must be at most 1000, got {value}")
    return value


class FlappingConfig(ConfigModel):
    """``flapping: {window: 20, high: 50, low: 25}``; ``flapping: false`` turns it off."""

    enabled: bool = True
    window: Annotated[Count, After(_at_least_two)] = 20
    high: Percent = 50.0
    low: Percent = 25.0

    @classmethod
    def prepare(cls, data: Any) -> Any:
        if isinstance(data, bool):
            return {"enabled": data}
        if not isinstance(data, Mapping):
            raise ValueError("expected a mapping such as {window: 20, high: 50, low: 25}, or false")
        return data

    def __post_init__(self) -> None:
        if self.low >= self.high:
            raise KeyedError("low", f"must be below high ({self.high:g}), or the check could never stop flapping")

    def rule(self) -> FlapRule | None:
        return FlapRule(self.window, self.high, self.low) if self.enabled else None


def _whole_minutes(value: float) -> float:
    if value < 60:
        raise ValueError(f"must be at least 1m (the baseline is kept per minute), got {format_duration(value)}")
    if value > MAX_BASELINE_WINDOW:
        raise ValueError(f"must be at most {format_duration(MAX_BASELINE_WINDOW)}, got {format_duration(value)}")
    return value


class BaselineConfig(ConfigModel):
    """``baseline: {window: 1h, min_samples: 30}``: the rolling median latency of passing results."""

    window: Annotated[PositiveDuration, After(_whole_minutes)] = 3600.0
    min_samples: Count = 30
