"""Heal kinds: one module each, registered here and nowhere else.

A healer is built with what it needs (a ``DockerEngine`` for ``restart_container``) and exposes
one coroutine, ``heal(target) -> HealOutcome``, which never raises. Adding a kind touches its
module, the ``HEALERS`` entry below and its test.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from actions.healers.docker_restart import DockerRestartHealer, HealOutcome


class Healer(Protocol):
    """What the incident engine needs from a heal kind."""

    kind: ClassVar[str]

    async def heal(self, target: str) -> HealOutcome: ...


HEALERS: dict[str, type[DockerRestartHealer]] = {
    DockerRestartHealer.kind: DockerRestartHealer,
}

__all__ = ["HEALERS", "DockerRestartHealer", "HealOutcome", "Healer"]
