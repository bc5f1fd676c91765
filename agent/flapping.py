"""Flapping: a check that keeps changing state, told apart from one that fails or passes.

Nagios's method. The last ``window`` state changes a check could have made (between its last
``window + 1`` results) are weighed linearly from 0.8 (the oldest) to 1.2 (the newest), so a
recent change counts more than an old one; the weighted share of those that were changes is the
check's *flap share*. Until ``window + 1`` results exist, the missing ones count as unchanged.
Hysteresis keeps the verdict from flapping itself: a check starts flapping when the share goes
above ``high`` and stops only once it falls below ``low``. Pure: ``agent.incidents`` decides what
flapping does to an incident, the engine keeps one ``FlapHistory`` per check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["FlapHistory", "FlapRule", "change_share", "next_flapping"]


@dataclass(frozen=True, slots=True)
class FlapRule:
    """One check's flapping thresholds: ``high`` and ``low`` are percentages of weighted changes."""

    window: int = 20
    high: float = 50.0
    low: float = 25.0


def _weight(i: int, window: int) -> float:
    """Weight of the ``i``-th of ``window`` transitions, 0 the oldest: 0.8 … 1.2, linearly."""
    return 1.0 if window == 1 else 0.8 + 0.4 * i / (window - 1)


def change_share(states: Sequence[bool], window: int) -> float:
    """The weighted share (0–100) of changes among the last ``window`` transitions of ``states``
    (oldest first); transitions ``states`` is too short to have count as unchanged."""
    recent = list(states)[-(window + 1) :]
    missing = window - (len(recent) - 1) if recent else window
    changed = 0.0
    for j in range(1, len(recent)):
        if recent[j] != recent[j - 1]:
            changed += _weight(missing + j - 1, window)
    # The weights of all ``window`` transitions add up to ``window`` (their mean is 1).
    return 100.0 * changed / window


def next_flapping(flapping: bool, share: float, rule: FlapRule) -> bool:
    """Whether the check is flapping after a result, given whether it was before (hysteresis)."""
    if flapping:
        return share >= rule.low
    return share > rule.high


class FlapHistory:
    """The last ``window + 1`` results of one check (passing or not), and their flap share kept up
    to date in O(1) a result: each new transition ages every other by one step of weight.

    States and transitions are bits of two ints (newest in the lowest bit): a few dozen bytes a
    check, where two deques cost ~760 (2 MB at 3,000 checks)."""

    __slots__ = ("window", "_bits", "_count", "_changes", "_transitions", "_changed", "_weighted", "_step",
                 "_until_exact")

    def __init__(self, window: int, states: Iterable[bool] = ()) -> None:
        self.window = window
        self._bits = 0  # the states, 1 = passing, newest lowest
        self._count = 0  # states kept, at most window + 1
        self._changes = 0  # the transitions between them, 1 = a change, newest lowest
        self._transitions = 0  # transitions kept, at most window
        self._changed = 0  # how many of them are changes
        self._weighted = 0.0  # their weights added up
        self._step = 0.4 / (window - 1) if window > 1 else 0.0
        self._until_exact = window
        for ok in states:
            self.add(ok)

    @property
    def states(self) -> list[bool]:
        """The states kept, oldest first."""
        return [bool((self._bits >> i) & 1) for i in reversed(range(self._count))]

    def add(self, ok: bool) -> float:
        """Add a result; the flap share with it."""
        if self._count:
            changed = ok != bool(self._bits & 1)
            if self._transitions == self.window:
                oldest = (self._changes >> (self.window - 1)) & 1
                self._changes &= (1 << (self.window - 1)) - 1
                self._transitions -= 1
                if oldest:
                    self._changed -= 1
                    self._weighted -= _weight(0, self.window)
            self._weighted -= self._step * self._changed  # every transition kept is one older
            self._changes = (self._changes << 1) | changed
            self._transitions += 1
            if changed:
                self._changed += 1
                self._weighted += _weight(self.window - 1, self.window)
        self._bits = ((self._bits << 1) | ok) & ((1 << (self.window + 1)) - 1)
        self._count = min(self._count + 1, self.window + 1)
        self._until_exact -= 1
        if self._until_exact <= 0:  # now and then from scratch, so rounding never adds up
            self._until_exact = self.window
            return self._exact()
        return 100.0 * self._weighted / self.window

    def _exact(self) -> float:
        share = change_share(self.states, self.window)
        self._weighted = share * self.window / 100.0
        return share

    def resized(self, window: int) -> FlapHistory:
        """The same results under another window (a reload changed it)."""
        return FlapHistory(window, self.states)
