"""Severity rules: raise an incident's severity from what is observed while it lasts.

``severity_rules: [{when: "failing_for >= 2m", severity: critical}]`` on a check (or in
``defaults``). A ``when`` is one comparison, ``FIELD OP VALUE``, parsed once at config load by
the small parser below (no ``eval``), so a typo is a config error with its column:

- fields: ``failing_for`` (a duration: how long the check has been failing, from the start of
  the first failing result of the current streak) and ``heal_attempts`` (an integer: heals made
  during the current incident);
- operators: ``>=``, ``>``, ``==``, ``<=``, ``<``;
- values: a duration (``90s``, ``2m``, ``1h``) for ``failing_for``, an integer for
  ``heal_attempts``.

Rules only ever raise: the most severe matching rule wins if it is more severe than the
incident is now (a person who lowered it by hand is not overruled by a rule already applied:
each rule's severity is applied at most once per incident). ``agent.engine`` applies the result.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from agent.durations import format_duration, parse_duration
from agent.incidents import SEVERITIES

FIELDS = ("failing_for", "heal_attempts")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}
_TOKEN = re.compile(r"\s*(?:(?P<op>>=|<=|==|>|<)|(?P<word>[A-Za-z0-9_.]+)|(?P<bad>\S))")


class RuleError(ValueError):
    """A ``when`` that does not parse; ``column`` is 1-based."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed ``when``: ``field op value`` (a duration in seconds, or a count)."""

    field: str
    op: str
    value: float

    def holds(self, facts: Facts) -> bool:
        seen = facts.failing_for if self.field == "failing_for" else facts.heal_attempts
        return seen is not None and _OPS[self.op](seen, self.value)

    def __str__(self) -> str:
        shown = format_duration(self.value) if self.field == "failing_for" else str(int(self.value))
        return f"{self.field} {self.op} {shown}"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules look at, about one check's current incident."""

    failing_for: float | None  # None while the check passes
    heal_attempts: int


@lru_cache(maxsize=1024)
def parse(text: str) -> Condition:
    """``"failing_for >= 2m"`` → a Condition; a RuleError names the column that is wrong."""
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing blanks are left
            break
        kind = m.lastgroup or "bad"
        tokens.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    end = len(text.rstrip()) + 1
    if not tokens:
        raise RuleError(1, f"expected a field ({' or '.join(FIELDS)})")
    for kind, word, col in tokens:
        if kind == "bad":
            raise RuleError(col, f"unexpected {word!r}")
    field, field_col = tokens[0][1], tokens[0][2]
    if tokens[0][0] != "word" or field not in FIELDS:
        raise RuleError(field_col, f"unknown field {field!r} (known: {', '.join(FIELDS)})")
    if len(tokens) < 2 or tokens[1][0] != "op":
        col = tokens[1][2] if len(tokens) > 1 else end
        raise RuleError(col, f"expected a comparison ({' '.join(_OPS)}) after {field}")
    op = tokens[1][1]
    if len(tokens) < 3 or tokens[2][0] != "word":
        col = tokens[2][2] if len(tokens) > 2 else end
        raise RuleError(col, "expected a value" + (" (a duration such as 2m)" if field == "failing_for" else ""))
    raw, value_col = tokens[2][1], tokens[2][2]
    if len(tokens) > 3:
        raise RuleError(tokens[3][2], f"unexpected {tokens[3][1]!r} after the value (one comparison per rule)")
    if field == "failing_for":
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise RuleError(value_col, f"failing_for takes a duration: {exc}") from None
    else:
        if not raw.isdigit():
            raise RuleError(value_col, f"heal_attempts takes a whole number, got {raw!r}")
        value = float(int(raw))
    return Condition(field, op, value)


def raised(rules: Iterable[tuple[str, str]], facts: Facts, current: str) -> tuple[str, str] | None:
    """The (severity, rule) to raise to: the most severe matching rule more severe than ``current``."""
    best: tuple[str, str] | None = None
    for when, severity in rules:
        if SEVERITIES.index(severity) >= SEVERITIES.index(best[0] if best else current):
            continue
        if parse(when).holds(facts):
            best = (severity, when)
    return best


__all__ = ["FIELDS", "Condition", "Facts", "RuleError", "parse", "raised"]
