"""Heal a container by restarting it through the Docker Engine API.

The healer only acts: whether a restart is allowed (budget, cooldown, grace, verification) is
the incident engine's decision. It never raises, so a failed heal is an outcome the engine
records on the incident's timeline, not an exception in a background task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agent.dockerclient import DockerEngine, DockerError


@dataclass(frozen=True, slots=True)
class HealOutcome:
    """Whether a heal action succeeded, and what happened in one line."""

    ok: bool
    message: str


class DockerRestartHealer:
    """Restarts a container, giving it ``stop_timeout`` seconds to stop before Docker kills it."""

    kind: ClassVar[str] = "restart_container"
    needs: ClassVar[frozenset[str]] = frozenset({"docker"})

    @classmethod
    def default_target(cls, check: Mapping[str, Any]) -> str | None:
        """With no ``restart_container`` written, a check heals its own ``container``."""
        container = check.get("container")
        return container if isinstance(container, str) else None

    def __init__(self, engine: DockerEngine, stop_timeout: int = 10) -> None:
        self.engine = engine
        self.stop_timeout = stop_timeout

    async def heal(self, container: str) -> HealOutcome:
        try:
            await self.engine.restart(container, stop_timeout=self.stop_timeout)
        except DockerError as exc:
            return HealOutcome(False, str(exc))
        except Exception as exc:  # never raise into the engine's background task
            return HealOutcome(False, f"{type(exc).__name__}: {exc}")
        return HealOutcome(True, f"restarted container {container!r}")
