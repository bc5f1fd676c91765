"""What the engine keeps of a check's recent results: the last few, in a compact ring.

The evidence bundle shows a check's last ``HISTORY_LIMIT`` (20) results, so the engine keeps them
for every check. As objects they cost ~200 bytes each (the result, its two floats, an empty details
dict): 12 MB at 3,000 checks. Here an entry is two doubles, a byte of flags and a reference to its
message, shared with the entry before when it is the same text ("HTTP 200" twenty times is one
string): under 1 KB per check for all 20. Results are built again only when they are read (the
evidence of an incident opening or resolving). The latest result is also kept as itself (``last``),
which every new result and every read of the checks' state looks at.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import replace

from checks.base import CheckResult

_OK, _WARNING = 1, 2


class History:
    """The last ``size`` results of one check (details dropped), oldest first when iterated."""

    __slots__ = ("_times", "_flags", "_messages", "_next", "_count", "last")

    def __init__(self, size: int) -> None:
        self._times = array("d", bytes(16 * size))  # started_at, latency of each entry
        self._flags = bytearray(size)
        self._messages: list[str] = [""] * size
        self._next = 0  # where the next entry goes
        self._count = 0
        self.last: CheckResult | None = None  # the latest, without its details

    def append(self, result: CheckResult) -> CheckResult:
        """Keep ``result``; returns the form kept (``last``): no details, a repeated message shared."""
        previous = self.last
        if previous is not None and previous.message == result.message and previous.message is not result.message:
            result = replace(result, message=previous.message, details={})
        elif result.details:
            result = replace(result, details={})  # a response body per result would cost ~100 MB at 1,000 checks
        i = self._next
        self._times[2 * i] = result.started_at
        self._times[2 * i + 1] = result.latency
        self._flags[i] = (_OK if result.ok else 0) | (_WARNING if result.warning else 0)
        self._messages[i] = result.message
        self._next = (i + 1) % len(self._flags)
        self._count = min(self._count + 1, len(self._flags))
        self.last = result
        return result

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[CheckResult]:
        if self.last is None:
            return
        name, size = self.last.check, len(self._flags)
        for k in range(self._count):
            i = (self._next - self._count + k) % size
            flags = self._flags[i]
            yield CheckResult(
                name, bool(flags & _OK), self._times[2 * i], self._times[2 * i + 1], self._messages[i],
                warning=bool(flags & _WARNING),
            )
