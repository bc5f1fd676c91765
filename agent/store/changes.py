"""What the incident writer hands the store: one change to one incident, and the ids it makes."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def new_id(prefix: str, now: float | None = None) -> str:
    """Time-ordered, unique: sorts by creation and never collides across restarts."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{ms:012x}{secrets.token_hex(6)}"


@dataclass(slots=True)
class Change:
    """One incident change: what to write, what to append, which events it causes."""

    incident_id: str
    at: float
    create: dict[str, Any] | None = None  # the new incident's columns
    update: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    timeline: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    events: list[tuple[str, str | None]] = field(default_factory=list)  # (event kind, reason)
    notifiers: Sequence[str] = ()
    notifiers_for: dict[str, Sequence[str]] = field(default_factory=dict)  # per event kind, after filters
    heal_attempt: tuple[str, str] | None = None  # (heal kind, target) spent from the budget
    author: str | None = None  # who made the change by hand (None: the agent itself)
    event_fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # per event kind: its extras
    comment: tuple[str, str, bool] | None = None  # (author, text, internal) to add
    status_update: tuple[str, str, str] | None = None  # (author, phase, message) to post
