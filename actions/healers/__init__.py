"""Heal kinds: one module each, registered here and nowhere else.

``HEALERS`` maps a kind (its key under a check's ``heal:``) to its ``Healer`` class; the config
loader and the engine read it at call time, so a test can register a kind of its own. The first
kind that can default its target from the check (``restart_container``: the check's container)
is the one ``heal: {}`` means.
"""

from __future__ import annotations

from actions.healers.base import OUTPUT_LIMIT, HealClients, Healer, HealOutcome, kept_output
from actions.healers.docker_restart import DockerRestartHealer
from actions.healers.restart_service import RestartServiceHealer
from actions.healers.run import RunHealer
from actions.healers.stop_container import StopContainerHealer

HEALERS: dict[str, type[Healer]] = {
    DockerRestartHealer.kind: DockerRestartHealer,
    StopContainerHealer.kind: StopContainerHealer,
    RestartServiceHealer.kind: RestartServiceHealer,
    RunHealer.kind: RunHealer,
}


def build_healer(kind: str, target: str, clients: HealClients, *, timeout: float | None = None) -> Healer:
    """The healer for one check's ``heal:`` section (``timeout`` only for kinds that take one)."""
    try:
        cls = HEALERS[kind]
    except KeyError:
        raise ValueError(f"unknown heal kind {kind!r} (known: {', '.join(sorted(HEALERS))})") from None
    return cls(target, clients) if timeout is None else cls(target, clients, timeout=timeout)


__all__ = [
    "HEALERS",
    "OUTPUT_LIMIT",
    "DockerRestartHealer",
    "HealClients",
    "HealOutcome",
    "Healer",
    "RestartServiceHealer",
    "RunHealer",
    "StopContainerHealer",
    "build_healer",
    "kept_output",
]
