"""The one interface every heal kind implements, and the outcome of one heal.

A healer is bound to one target (a container, a unit, a command) when the agent starts. It
only acts: whether it may act now (budget, cooldown, grace, verification) is the incident
engine's decision, made by the pure state machine from the check's ``heal:`` policy. So a
healer never counts, never sleeps between tries and never raises: every failure is a
``HealOutcome`` the engine records on the incident's timeline.

Adding a heal kind: a module with a ``Healer`` subclass, one entry in ``HEALERS``
(``actions/healers/__init__.py``), and its test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from agent.dockerclient import DockerEngine


@dataclass(frozen=True, slots=True)
class HealOutcome:
    """Whether a heal succeeded, and what happened in one line."""

    ok: bool
    message: str


class HealClients(Protocol):
    """The shared clients a healer may use (``checks.CheckContext`` is one)."""

    @property
    def docker(self) -> DockerEngine | None: ...


class Healer:
    """Base of every heal kind. Subclasses set the class variables and implement ``heal``.

    ``kind`` is also the healer's key under a check's ``heal:`` (``heal: {restart_container: api}``),
    whose value is the target. ``verb``, ``verb_ing`` and ``noun`` word the timeline
    ("restarting container 'api'", "dry run: would restart container 'api'",
    "restart budget spent for container 'api'").
    """

    kind: ClassVar[str]
    verb: ClassVar[str]
    verb_ing: ClassVar[str]
    noun: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, target: str, clients: HealClients) -> None:
        self.target = target
        self.clients = clients

    @classmethod
    def default_target(cls, check: Mapping[str, Any]) -> str | None:
        """The target when ``heal:`` names none, from the check's raw config (None: required)."""
        return None

    @property
    def subject(self) -> str:
        """The target in words: ``container 'api'``."""
        return f"{self.noun} '{self.target}'"

    @property
    def container(self) -> str | None:
        """The container this heal acts on, whose logs and state go into the evidence (if any)."""
        return None

    def describe(self) -> str:
        """What a heal would do, for dry runs: ``restart container 'api'``."""
        return f"{self.verb} {self.subject}"

    async def heal(self) -> HealOutcome:
        """Make one attempt. Must not raise, except ``asyncio.CancelledError``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target!r}>"
