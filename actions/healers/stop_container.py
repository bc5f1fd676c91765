"""Contain a failure by stopping a container through the Docker Engine API
(``heal: {stop_container: worker}``), the "contain" step of a runbook.

The default target is the check's own ``container``. Stopping a container that is already
stopped succeeds. The check usually keeps failing afterwards (that was the point), so the
incident's timeline says ``heal_failed`` once the cooldown is over, and a further stop (a no-op)
is made while the budget lasts: ``max_restarts: 1`` makes it one stop, then ``heal_exhausted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from actions.healers.base import HealClients, Healer, HealOutcome
from agent.dockerclient import DockerError


class StopContainerHealer(Healer):
    """Stops a container, giving it ``stop_timeout`` seconds before Docker kills it."""

    kind: ClassVar[str] = "stop_container"
    verb: ClassVar[str] = "stop"
    verb_ing: ClassVar[str] = "stopping"
    deed: ClassVar[str] = "stop"
    noun: ClassVar[str] = "container"
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
            await engine.stop(self.target, stop_timeout=self.stop_timeout)
        except DockerError as exc:
            return HealOutcome(False, str(exc))
        except Exception as exc:  # never raise into the engine's background task
            return HealOutcome(False, f"{type(exc).__name__}: {exc}")
        return HealOutcome(True, f"stopped container {self.target!r}")
