"""The per-check incident state machine: pure, clock-free, I/O-free.

Every safety rule of the product lives here so it can be tested as a script (fail, fail, ok, ok)
with an injected time: when a failure becomes an incident, when it resolves, when a heal may
restart a container (budget, cooldown, verification). ``agent.engine`` applies the decisions.

Rules, spelled out (these are the contract, see the README):
- ``open_after`` counts from the start of the first failing result of the current failing
  streak; the incident opens on the first failing result that starts at least that much later.
- ``resolve_after`` passing results in a row resolve an open incident.
- A heal restarts when the incident opens, and again when a failing result starts after the
  cooldown of the previous restart ended. Failing results during the cooldown never restart;
  passing ones count toward ``resolve_after``.
- ``heal_succeeded``: the first passing result after a restart. ``heal_failed``: the Docker call
  failed, or the check still failed when the cooldown ended.
- The budget is a rolling window per container, shared by every incident: never more than
  ``max_restarts`` attempts (successful or not) within ``within`` seconds. When it is spent the
  incident records ``heal_exhausted`` once and escalates; heals resume if the window frees up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agent.durations import format_duration

SEVERITIES = ("critical", "high", "medium", "low")


def sev_label(severity: str) -> str:
    return f"SEV-{SEVERITIES.index(severity) + 1}"


@dataclass(frozen=True, slots=True)
class HealPolicy:
    container: str
    max_restarts: int
    within: float
    cooldown: float
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    open_after: float
    resolve_after: int
    heal: HealPolicy | None = None

    @classmethod
    def from_config(cls, check: Any, heal_enabled: bool = True) -> Policy:
        heal = None
        if check.heal is not None:
            heal = HealPolicy(
                container=check.heal.target,
                max_restarts=check.heal.max_restarts,
                within=check.heal.within,
                cooldown=check.heal.cooldown,
                dry_run=not heal_enabled,
            )
        return cls(open_after=check.open_after, resolve_after=check.resolve_after, heal=heal)


class HealBudget:
    """Restart attempts per container in a rolling window; shared by all checks and incidents."""

    def __init__(self, attempts: Iterable[tuple[str, float]] = ()) -> None:
        self._attempts: dict[str, list[float]] = {}
        for container, at in attempts:
            self._attempts.setdefault(container, []).append(at)
        for times in self._attempts.values():
            times.sort()

    def used(self, container: str, now: float, within: float) -> int:
        return sum(1 for at in self._attempts.get(container, ()) if at > now - within)

    def allows(self, container: str, now: float, policy: HealPolicy) -> bool:
        return self.used(container, now, policy.within) < policy.max_restarts

    def record(self, container: str, at: float) -> None:
        self._attempts.setdefault(container, []).append(at)

    def frees_at(self, container: str, now: float, policy: HealPolicy) -> float | None:
        """When the next attempt becomes allowed (None if it already is)."""
        recent = [at for at in self._attempts.get(container, ()) if at > now - policy.within]
        if len(recent) < policy.max_restarts:
            return None
        return recent[len(recent) - policy.max_restarts] + policy.within

    def prune(self, now: float, longest_window: float) -> None:
        for container, times in list(self._attempts.items()):
            kept = [at for at in times if at > now - longest_window]
            if kept:
                self._attempts[container] = kept
            else:
                del self._attempts[container]


DecisionKind = Literal[
    "open", "resolve", "restart", "heal_succeeded", "heal_failed", "heal_exhausted", "dry_run"
]


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    message: str = ""


@dataclass(slots=True)
class CheckState:
    """What the machine remembers about one check. Persisted while an incident is open."""

    incident_id: str | None = None
    failing_since: float | None = None
    passing_streak: int = 0
    restarts: int = 0  # attempts made during the current incident
    cooldown_until: float | None = None
    verifying: bool = False  # a restart was made and has not been judged yet
    exhausted: bool = False  # heal_exhausted recorded and not yet followed by a restart
    last_heal: str | None = None  # attempted | succeeded | failed | exhausted | dry_run

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def reset_incident(self) -> None:
        self.incident_id = None
        self.restarts = 0
        self.cooldown_until = None
        self.verifying = False
        self.exhausted = False
        self.last_heal = None


@dataclass(slots=True)
class Step:
    decisions: list[Decision] = field(default_factory=list)

    def add(self, kind: DecisionKind, message: str = "") -> None:
        self.decisions.append(Decision(kind, message))

    def kinds(self) -> list[str]:
        return [d.kind for d in self.decisions]


def evaluate(
    state: CheckState,
    ok: bool,
    started_at: float,
    policy: Policy,
    budget: HealBudget,
    now: float,
    message: str = "",
) -> list[Decision]:
    """Feed one result to the machine; mutates ``state`` and returns what must happen.

    ``open`` is always first when present; the engine gives the incident its id and sets
    ``state.incident_id`` before applying the rest. ``restart`` has already been counted in the
    budget (at ``now``) when this returns.
    """
    step = Step()
    if ok:
        state.failing_since = None
        state.passing_streak += 1
        if state.incident_id is None:
            return step.decisions
        if state.verifying:
            state.verifying = False
            state.last_heal = "succeeded"
            step.add("heal_succeeded", "check passed again after the restart")
        if state.passing_streak >= policy.resolve_after:
            step.add("resolve", f"recovered: {state.passing_streak} passing results in a row")
        return step.decisions

    state.passing_streak = 0
    if state.failing_since is None:
        state.failing_since = started_at
    if state.incident_id is None:
        if started_at - state.failing_since < policy.open_after:
            return step.decisions
        step.add("open", message)
    if policy.heal is not None:
        _heal_step(state, started_at, policy.heal, budget, now, step)
    return step.decisions


def _heal_step(
    state: CheckState, started_at: float, heal: HealPolicy, budget: HealBudget, now: float, step: Step
) -> None:
    if heal.dry_run:
        if state.last_heal != "dry_run":
            state.last_heal = "dry_run"
            step.add("dry_run", f"dry run: would restart container '{heal.container}' (heal is off)")
        return
    if state.cooldown_until is not None and started_at < state.cooldown_until:
        return  # grace after a restart: a slow-booting service is not restarted in a loop
    if state.verifying:
        state.verifying = False
        state.last_heal = "failed"
        step.add("heal_failed", "check still failing when the cooldown ended")
    if budget.allows(heal.container, now, heal):
        budget.record(heal.container, now)
        state.restarts += 1
        state.cooldown_until = now + heal.cooldown
        state.verifying = True
        state.exhausted = False
        state.last_heal = "attempted"
        step.add("restart", f"restarting container '{heal.container}'")
    elif not state.exhausted:
        state.exhausted = True
        state.last_heal = "exhausted"
        used = budget.used(heal.container, now, heal.within)
        step.add(
            "heal_exhausted",
            f"restart budget spent for container '{heal.container}': "
            f"{used} of {heal.max_restarts} attempts used within {format_duration(heal.within)}",
        )


def restart_call_failed(state: CheckState) -> None:
    """The Docker call itself failed: that attempt is judged now, not after the cooldown."""
    state.verifying = False
    state.last_heal = "failed"

