"""Contain a failure by stopping a container through the Docker Engine API
(``heal: {stop_container: worker}``), the "contain" step of a runbook.

The default target is the check's own ``container``. Stopping a container that is already
stopped succeeds. The check usually keeps failing afterwards (that was the point), so the
incident's timeline says ``heal_failed`` once the cooldown is over, and a further stop (a no-op)
is made while the budget lasts: ``max_restarts: 1`` makes it one stop, then ``heal_exhausted``.
"""

from __future__ import annotations

from typing import ClassVar

from actions.healers.docker_restart import DockerRestartHealer
from agent.dockerclient import DockerEngine


class StopContainerHealer(DockerRestartHealer):
    """Stops a container, giving it ``stop_timeout`` seconds before Docker kills it."""

    kind: ClassVar[str] = "stop_container"
    verb: ClassVar[str] = "stop"
    verb_ing: ClassVar[str] = "stopping"
    deed: ClassVar[str] = "stop"
    past: ClassVar[str] = "stopped"

    async def _act(self, engine: DockerEngine) -> None:
        await engine.stop(self.target, stop_timeout=self.stop_timeout)
