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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from agent.dockerclient import DockerEngine

OUTPUT_LIMIT = 4096
"""Bytes of a heal's output kept (on the timeline as ``heal_output``, and in the evidence)."""


@dataclass(frozen=True, slots=True)
class HealOutcome:
    """Whether a heal succeeded, and what happened in one line.

    ``output`` is what the heal printed, for kinds that run a command (None: nothing to show);
    a healer may hand over more than ``OUTPUT_LIMIT`` bytes of it (so that masking a secret
    cut at the limit still finds it). ``output_bytes`` says how many bytes there were in all
    when ``output`` is only the start of them (0: it is all of it).
    """

    ok: bool
    message: str
    output: str | None = None
    output_bytes: int = 0


def kept_output(output: str, total_bytes: int = 0, mask: Callable[[str], str] = lambda s: s) -> str:
    """The output as the timeline and the evidence keep it: masked first, then cut to the first
    ``OUTPUT_LIMIT`` bytes, with a last line saying so when it was longer."""
    masked = mask(output).encode()
    if len(masked) <= OUTPUT_LIMIT and not total_bytes:
        return masked.decode(errors="replace")
    total = total_bytes or len(output.encode())  # as the command wrote it, before masking
    head = masked[:OUTPUT_LIMIT].decode(errors="ignore")  # not a broken character at the cut
    return f"{head}\n[… {total} bytes in all, the first {OUTPUT_LIMIT} kept]"


class HealClients(Protocol):
    """The shared clients a healer may use (``checks.CheckContext`` is one)."""

    @property
    def docker(self) -> DockerEngine | None: ...


class Healer:
    """Base of every heal kind. Subclasses set the class variables and implement ``heal``.

    ``kind`` is also the healer's key under a check's ``heal:`` (``heal: {restart_container: api}``),
    whose value is the target. ``verb``, ``verb_ing``, ``noun`` and ``deed`` word the timeline
    ("restarting container 'api'", "dry run: would restart container 'api'",
    "restart budget spent for container 'api'", "check passed again after the restart").
    ``needs`` says which shared clients it uses (``"docker"``), so a config without them starts
    none. ``timeout_default`` is set by kinds that take a ``heal.timeout`` (None: none).
    """

    kind: ClassVar[str]
    verb: ClassVar[str]
    verb_ing: ClassVar[str]
    noun: ClassVar[str]
    deed: ClassVar[str] = "restart"
    needs: ClassVar[frozenset[str]] = frozenset()
    timeout_default: ClassVar[float | None] = None

    def __init__(self, target: str, clients: HealClients, *, timeout: float | None = None) -> None:
        self.target = target
        self.clients = clients
        self.timeout = self.timeout_default if timeout is None else timeout

    @classmethod
    def default_target(cls, check: Mapping[str, Any]) -> str | None:
        """The target when ``heal:`` names none, from the check's raw config (None: required)."""
        return None

    @classmethod
    def target_of(cls, value: Any) -> Any:
        """The target from the value written under the kind's key (``run: [fix, --now]`` is the
        command line ``fix --now``). Raises ``ValueError`` when it cannot be one; the default hands
        the value on, for the config to check that it is a non-empty string."""
        return value

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
