"""Heal kinds: one module each, registered here and nowhere else.

``HEALERS`` maps a kind (its key under a check's ``heal:``) to its ``Healer`` class; the config
loader and the engine read it at call time, so a test can register a kind of its own.
"""

from __future__ import annotations

from actions.healers.base import HealClients, Healer, HealOutcome
from actions.healers.docker_restart import DockerRestartHealer

HEALERS: dict[str, type[Healer]] = {
    DockerRestartHealer.kind: DockerRestartHealer,
}


def build_healer(kind: str, target: str, clients: HealClients) -> Healer:
    """The healer for one check's ``heal:`` section."""
    try:
        cls = HEALERS[kind]
    except KeyError:
        raise ValueError(f"unknown heal kind {kind!r} (known: {', '.join(sorted(HEALERS))})") from None
    return cls(target, clients)


__all__ = ["HEALERS", "DockerRestartHealer", "HealClients", "HealOutcome", "Healer", "build_healer"]
