"""Heal a container by restarting it through the Docker Engine API (``heal: {restart_container: X}``).

The default target is the check's own ``container``, so ``heal: {}`` on a container check
restarts that container.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from actions.healers.base import HealClients, Healer, HealOutcome
from agent.dockerclient import DockerEngine, DockerError


class DockerRestartHealer(Healer):
    """Restarts a container, giving it ``stop_timeout`` seconds to stop before Docker kills it."""

    kind: ClassVar[str] = "restart_container"
    verb: ClassVar[str] = "restart"
    verb_ing: ClassVar[str] = "restarting"
    noun: ClassVar[str] = "container"
    past: ClassVar[str] = "restarted"  # the outcome's message: "restarted container 'api'"
    needs: ClassVar[frozenset[str]] = frozenset({"docker"})

    def __init__(self, target: str, clients: HealClients, stop_timeout: int = 10) -> None:
        super().__init__(target, clients)
        self.stop_timeout = stop_timeout

    @classmethod
    def default_target(cls, check: Mapping[str, Any]) -> str | None:
        container = check.get("container")
        return container if isinstance(container, str) and container.strip() else None

    @property
    def container(self) -> str | None:
        return self.target

    async def heal(self) -> HealOutcome:
        engine = self.clients.docker
        if engine is None:
            return HealOutcome(False, "no Docker engine configured")
        try:
            await self._act(engine)
        except DockerError as exc:
            return HealOutcome(False, str(exc))
        except Exception as exc:  # never raise into the engine's background task
            return HealOutcome(False, f"{type(exc).__name__}: {exc}")
        return HealOutcome(True, f"{self.past} container {self.target!r}")

    async def _act(self, engine: DockerEngine) -> None:
        """The one Docker call of this kind; a container kind of its own overrides only this."""
        await engine.restart(self.target, stop_timeout=self.stop_timeout)
