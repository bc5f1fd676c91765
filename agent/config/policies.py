"""``policies:`` and ``postmortem_after`` in the config: what each severity asks of the people
running an incident (``agent.policies`` runs the timers)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from agent.config.model import After, field
from agent.config.types import SEVERITIES, ConfigModel, Name, PositiveDuration
from agent.durations import format_duration

__all__ = [
    "DEFAULT_POLICIES",
    "DEFAULT_POSTMORTEM_AFTER",
    "EscalationStep",
    "PoliciesConfig",
    "SeverityPolicy",
    "postmortem_required",
]


def _pages_somebody(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must name at least one notifier (a step that pages nobody)")
    return value


class EscalationStep(ConfigModel):
    """One step of an escalation: unacknowledged this long after opening, page these notifiers."""

    after: PositiveDuration
    notify: Annotated[list[Name], After(_pages_somebody)]


def _in_order(value: list[EscalationStep]) -> list[EscalationStep]:
    for before, step in zip(value, value[1:], strict=False):
        if step.after <= before.after:
            raise ValueError(
                f"steps must come later and later: {format_duration(step.after)} "
                f"is not after {format_duration(before.after)}"
            )
    return value


class SeverityPolicy(ConfigModel):
    """What one severity asks: acknowledge SLA, reminders, escalation steps, postmortem."""

    ack_within: PositiveDuration | None = None
    remind_every: PositiveDuration | None = None
    update_every: PositiveDuration | None = None
    escalate: Annotated[list[EscalationStep], After(_in_order)] = field(default_factory=list)
    postmortem: Literal["required", "optional"] = "optional"


_SHIPPED: dict[str, dict[str, Any]] = {
    "critical": {
        "ack_within": "5m", "remind_every": "5m", "update_every": "15m",
        "escalate": [{"after": "5m", "notify": ["secondary"]}, {"after": "60m", "notify": ["lead"]}],
        "postmortem": "required",
    },
    "high": {
        "ack_within": "15m", "remind_every": "15m", "update_every": "30m",
        "escalate": [{"after": "15m", "notify": ["secondary"]}], "postmortem": "optional",
    },
    "medium": {"ack_within": "1h", "remind_every": "1h", "update_every": "1h"},
    "low": {},
}
DEFAULT_POLICIES: dict[str, SeverityPolicy] = {k: SeverityPolicy.model_validate(v) for k, v in _SHIPPED.items()}
"""The shipped policies (the SLAs of the practice Lifeguard serves). Their escalation steps name
notifiers ``secondary`` and ``lead``: a step whose notifiers are not configured pages nobody but
is still recorded, so a config without those names loads as before."""

DEFAULT_POSTMORTEM_AFTER = 4 * 3600.0


class PoliciesConfig(ConfigModel):
    """``policies:``: one entry per severity; a severity left out keeps its shipped policy."""

    critical: SeverityPolicy = DEFAULT_POLICIES["critical"]
    high: SeverityPolicy = DEFAULT_POLICIES["high"]
    medium: SeverityPolicy = DEFAULT_POLICIES["medium"]
    low: SeverityPolicy = DEFAULT_POLICIES["low"]

    def of(self, severity: str) -> SeverityPolicy:
        found: SeverityPolicy = getattr(self, severity) if severity in SEVERITIES else SeverityPolicy()
        return found


def postmortem_required(policy: SeverityPolicy, opened_at: float, resolved_at: float, after: float) -> bool:
    """Whether the incident needs a postmortem: its severity says so, or it lasted over ``after``."""
    return policy.postmortem == "required" or resolved_at - opened_at > after
