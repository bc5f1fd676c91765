"""Heal kinds: one module each, registered here and nowhere else.

``HEALERS`` maps a kind (its key under a check's ``heal:``) to its ``Healer`` class; the config
loader and the engine read it at call time, so a test can register a kind of its own. The first
kind that can default its target from the check (``restart_container``: the check's container)
is the one ``heal: {}`` means.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from actions.healers.base import OUTPUT_LIMIT, HealClients, Healer, HealOutcome, kept_output
from agent.registry import LazyRegistry

if TYPE_CHECKING:  # pragma: no cover
    from actions.healers.docker_restart import DockerRestartHealer
    from actions.healers.restart_service import RestartServiceHealer
    from actions.healers.run import RunHealer
    from actions.healers.stop_container import StopContainerHealer

# Each kind's module is imported when a config uses it (an agent that heals nothing loads none).
HEALERS: LazyRegistry[type[Healer]] = LazyRegistry({
    "restart_container": "actions.healers.docker_restart:DockerRestartHealer",
    "stop_container": "actions.healers.stop_container:StopContainerHealer",
    "restart_service": "actions.healers.restart_service:RestartServiceHealer",
    "run": "actions.healers.run:RunHealer",
})

_CLASSES = {
    "DockerRestartHealer": "actions.healers.docker_restart",
    "StopContainerHealer": "actions.healers.stop_container",
    "RestartServiceHealer": "actions.healers.restart_service",
    "RunHealer": "actions.healers.run",
}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
