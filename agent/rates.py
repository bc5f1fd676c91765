"""Error rates over a window, and what the incident machine is told of a check's recent results.

``open_when: "error_rate > 10% over 5m"`` opens an incident on the share of failing results in a
window instead of on the length of a failing streak: the grammar is tiny on purpose (``error_rate``,
``>`` or ``>=``, a percentage, ``over`` and a duration) and parsed when the config is loaded.
``ErrorWindow`` keeps a check's results of the last ``over`` seconds (amortized O(1) a result);
``CheckRates`` bundles it with the check's ``FlapHistory`` and hands ``agent.incidents.evaluate``
a ``Rates``: the numbers it decides on. Pure, no I/O; the engine seeds both from the stored results
at start.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from agent.durations import format_duration, parse_duration
from agent.flapping import FlapHistory, FlapRule

__all__ = ["CheckRates", "ErrorWindow", "RateRule", "Rates", "parse_rate_rule"]

_RULE = re.compile(r"\s*error_rate\s*(>=|>)\s*(\d+(?:\.\d+)?)\s*%\s+over\s+(\S+)\s*")
_SHAPE = "expected 'error_rate > N% over DURATION' (or >=), e.g. 'error_rate > 10% over 5m'"


@dataclass(frozen=True, slots=True)
class RateRule:
    """``error_rate > percent% over window``: open when that share of results in the window fail."""

    percent: float
    window: float  # seconds
    inclusive: bool = False  # ``>=`` rather than ``>``

    def exceeded(self, share: float) -> bool:
        return share >= self.percent if self.inclusive else share > self.percent

    def __str__(self) -> str:
        op = ">=" if self.inclusive else ">"
        return f"error_rate {op} {self.percent:g}% over {format_duration(self.window)}"


def parse_rate_rule(text: object) -> RateRule:
    """The rule ``text`` spells; ``ValueError`` saying what is wrong (config errors quote it)."""
    if not isinstance(text, str):
        raise ValueError(_SHAPE)
    match = _RULE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid rule {text!r}: {_SHAPE}")
    op, number, duration = match.groups()
    percent = float(number)
    if percent > 100 or (percent == 100 and op == ">"):
        raise ValueError(f"invalid rule {text!r}: the error rate never exceeds {number}%")
    try:
        window = parse_duration(duration)
    except ValueError:
        raise ValueError(f"invalid rule {text!r}: {duration!r} is not a duration such as 30s, 5m or 1h") from None
    if window <= 0:
        raise ValueError(f"invalid rule {text!r}: the window must be longer than 0s")
    if window > 86400:
        raise ValueError(f"invalid rule {text!r}: the window must be at most 1d")
    return RateRule(percent, window, inclusive=op == ">=")


class ErrorWindow:
    """One check's results of the last ``window`` seconds (by start time), and how many failed."""

    def __init__(self, window: float, results: Iterable[tuple[float, bool]] = ()) -> None:
        self.window = window
        self._results: deque[tuple[float, bool]] = deque()
        self._failing = 0
        for started_at, ok in results:
            self.add(started_at, ok)

    def add(self, started_at: float, ok: bool) -> float:
        """Add a result; the share (0–100) of failing results in the window that ends with it."""
        self._results.append((started_at, ok))
        self._failing += not ok
        while self._results and self._results[0][0] <= started_at - self.window:
            _, old_ok = self._results.popleft()
            self._failing -= not old_ok
        return 100.0 * self._failing / len(self._results)

    @property
    def results(self) -> list[tuple[float, bool]]:
        return list(self._results)


@dataclass(frozen=True, slots=True)
class Rates:
    """What ``evaluate`` is told of a check's recent results, the current one included (None: no rule asks)."""

    error_share: float | None = None  # percent of failing results in the ``open_when`` window
    flap_share: float | None = None  # weighted percent of state changes (``agent.flapping``)


class CheckRates:
    """The windows one check's rules need, fed with every result."""

    def __init__(self, open_when: RateRule | None, flapping: FlapRule | None) -> None:
        self.errors = ErrorWindow(open_when.window) if open_when is not None else None
        self.flaps = FlapHistory(flapping.window) if flapping is not None else None

    @property
    def seed_span(self) -> tuple[float, int]:
        """What of the stored results seeds it: those of the last so many seconds, and at least the
        last so many results."""
        seconds = self.errors.window if self.errors is not None else 0.0
        return seconds, self.flaps.window + 1 if self.flaps is not None else 0

    def seed(self, results: Iterable[tuple[float, bool]]) -> None:
        """Stored results, oldest first (those of the last run): the windows go on from them."""
        for started_at, ok in results:
            self.observe(started_at, ok)

    def observe(self, started_at: float, ok: bool) -> Rates:
        return Rates(
            error_share=self.errors.add(started_at, ok) if self.errors is not None else None,
            flap_share=self.flaps.add(ok) if self.flaps is not None else None,
        )

    def retuned(self, open_when: RateRule | None, flapping: FlapRule | None) -> CheckRates:
        """The windows under a reloaded check's rules, keeping the results they hold."""
        new = CheckRates(open_when, flapping)
        if new.errors is not None and self.errors is not None:
            new.errors = ErrorWindow(new.errors.window, self.errors.results)
        if new.flaps is not None and self.flaps is not None:
            new.flaps = self.flaps.resized(new.flaps.window)
        return new
