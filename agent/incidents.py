"""The per-check incident state machine: pure, clock-free, I/O-free.

Every safety rule of the product lives here so it can be tested as a script (fail, fail, ok, ok)
with an injected time: when a failure becomes an incident, when it resolves, when a heal may act
(budget, cooldown, verification). ``agent.engine`` writes the decisions and only then adopts the
new state, so a write that fails leaves the machine where it was and the next result decides again.

Rules, spelled out (these are the contract, see the README):
- ``open_after`` counts from the start of the first failing result of the current failing
  streak; the incident opens on the first failing result that starts at least that much later.
- ``resolve_after`` passing results in a row resolve an open incident.
- A heal acts when the incident opens, and again when a failing result starts after the
  cooldown of the previous heal ended. Failing results during the cooldown never heal;
  passing ones count toward ``resolve_after``.
- ``heal_succeeded``: the first passing result after a heal. ``heal_failed``: the heal itself
  failed, or the check still failed when the cooldown ended.
- The budget is a rolling window per heal kind and target (a container), shared by every check
  and incident: never more than ``max_restarts`` attempts (successful or not) within ``within``
  seconds. When it is spent the incident records ``heal_exhausted`` once and escalates; heals
  resume if the window frees up.
- ``open_when`` (an error rate, ``agent.rates``) replaces ``open_after``: the incident opens on the
  first failing result at which the share of failing results in the window exceeds the rule.
- Flapping (``agent.flapping``): when the flap share goes above ``high`` the check is flapping; its
  incident (opened then if none is) records ``flapping_started`` once and neither resolves nor
  heals (a heal awaiting its verdict gets none); once the share falls below ``low`` it records
  ``flapping_stopped`` and the rules above apply again, from that result on. Streaks keep
  counting meanwhile. Resolved by hand while flapping, a check opens nothing until it stops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent.durations import format_duration
from agent.flapping import FlapRule, next_flapping
from agent.rates import RateRule, Rates

if TYPE_CHECKING:  # pragma: no cover
    from actions.healers.base import Healer

SEVERITIES = ("critical", "high", "medium", "low")

HealKey = tuple[str, str]
"""What a heal budget counts against: (heal kind, target), e.g. ("restart_container", "api")."""


def sev_label(severity: str) -> str:
    return f"SEV-{SEVERITIES.index(severity) + 1}"


def most_severe(*severities: str | None) -> str:
    """The most severe of those given (None ignored; ``low`` if none is)."""
    return min((s for s in severities if s is not None), key=SEVERITIES.index, default=SEVERITIES[-1])


@dataclass(frozen=True, slots=True)
class HealPolicy:
    """One check's heal rules, and the words its timeline uses for the heal."""

    target: str
    max_restarts: int
    within: float
    cooldown: float
    dry_run: bool = False
    kind: str = "restart_container"
    verb: str = "restart"
    verb_ing: str = "restarting"
    noun: str = "container"
    deed: str = "restart"

    @property
    def key(self) -> HealKey:
        return (self.kind, self.target)

    @property
    def subject(self) -> str:
        return f"{self.noun} '{self.target}'"


class _HealSettings(Protocol):
    @property
    def max_restarts(self) -> int: ...
    @property
    def within(self) -> float: ...
    @property
    def cooldown(self) -> float: ...


class _CheckSettings(Protocol):
    @property
    def open_after(self) -> float: ...
    @property
    def resolve_after(self) -> int: ...
    @property
    def open_rule(self) -> RateRule | None: ...
    @property
    def flap_rule(self) -> FlapRule | None: ...


@dataclass(frozen=True, slots=True)
class Policy:
    open_after: float
    resolve_after: int
    heal: HealPolicy | None = None
    open_when: RateRule | None = None  # replaces open_after when set
    flapping: FlapRule | None = None  # None: flapping is not watched

    @classmethod
    def for_check(
        cls,
        check: _CheckSettings,
        heal: _HealSettings | None = None,
        healer: Healer | None = None,
        *,
        heal_enabled: bool = True,
    ) -> Policy:
        """The policy of one configured check; ``heal`` and ``healer`` go together."""
        heal_policy = None
        if heal is not None and healer is not None:
            heal_policy = HealPolicy(
                target=healer.target,
                max_restarts=heal.max_restarts,
                within=heal.within,
                cooldown=heal.cooldown,
                dry_run=not heal_enabled,
                kind=healer.kind,
                verb=healer.verb,
                verb_ing=healer.verb_ing,
                noun=healer.noun,
                deed=healer.deed,
            )
        return cls(
            open_after=check.open_after,
            resolve_after=check.resolve_after,
            heal=heal_policy,
            open_when=check.open_rule,
            flapping=check.flap_rule,
        )


class HealBudget:
    """Heal attempts per (kind, target) in a rolling window; shared by all checks and incidents."""

    def __init__(self, attempts: Iterable[tuple[HealKey, float]] = ()) -> None:
        self._attempts: dict[HealKey, list[float]] = {}
        for key, at in attempts:
            self._attempts.setdefault(key, []).append(at)
        for times in self._attempts.values():
            times.sort()

    def used(self, key: HealKey, now: float, within: float) -> int:
        return sum(1 for at in self._attempts.get(key, ()) if at > now - within)

    def allows(self, now: float, policy: HealPolicy) -> bool:
        return self.used(policy.key, now, policy.within) < policy.max_restarts

    def record(self, key: HealKey, at: float) -> None:
        self._attempts.setdefault(key, []).append(at)

    def frees_at(self, now: float, policy: HealPolicy) -> float | None:
        """When the next attempt becomes allowed (None if it already is)."""
        recent = [at for at in self._attempts.get(policy.key, ()) if at > now - policy.within]
        if len(recent) < policy.max_restarts:
            return None
        return recent[len(recent) - policy.max_restarts] + policy.within

    def prune(self, now: float, longest_window: float) -> None:
        for key, times in list(self._attempts.items()):
            kept = [at for at in times if at > now - longest_window]
            if kept:
                self._attempts[key] = kept
            else:
                del self._attempts[key]


NO_RATES = Rates()

DecisionKind = Literal[
    "open", "resolve", "heal", "heal_succeeded", "heal_failed", "heal_exhausted", "dry_run",
    "flapping_started", "flapping_stopped",
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
    restarts: int = 0  # heal attempts made during the current incident
    cooldown_until: float | None = None
    verifying: bool = False  # a heal was made and has not been judged yet
    exhausted: bool = False  # heal_exhausted recorded and not yet followed by a heal
    last_heal: str | None = None  # attempted | succeeded | failed | exhausted | dry_run
    severity: str | None = None  # the open incident's severity now (opened at, raised, changed by hand)
    raised_to: str | None = None  # the most severe level a severity rule applied to this incident
    flapping: bool = False  # a fact of the check, not of its incident: kept after it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def after_incident(self) -> CheckState:
        """The state once the incident is over: the streaks stay, the incident's heal facts go."""
        return replace(
            self, incident_id=None, restarts=0, cooldown_until=None, verifying=False, exhausted=False, last_heal=None,
            severity=None, raised_to=None,
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """What one result does to a check: its next state and what must happen.

    ``state`` is the state to adopt once the decisions are written; the incident id is already
    in it on ``open``, and gone after ``resolve``. ``incident_id`` is the incident the decisions
    are about, and ``incident_state`` the state to store with it (on ``resolve``: the state it
    ended in, before the reset). ``heal`` is the budget key spent at ``now`` (to record once
    written).
    """

    state: CheckState
    decisions: list[Decision] = field(default_factory=list)
    incident_id: str | None = None
    heal: HealKey | None = None
    incident_state: CheckState | None = None

    @property
    def stored_state(self) -> CheckState:
        return self.incident_state if self.incident_state is not None else self.state

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
    new_incident_id: Callable[[], str] = lambda: "inc_new",
    rates: Rates = NO_RATES,
) -> Transition:
    """Feed one result to the machine. Pure: ``state`` and ``budget`` are not changed.

    ``rates`` are the check's window figures with this result in them (``agent.rates``)."""
    next_state = replace(state)
    decisions: list[Decision] = []
    if (flapped := _flap_step(next_state, ok, started_at, policy, rates, new_incident_id)) is not None:
        return flapped
    if state.flapping and next_state.incident_id is not None:  # it just stopped: the rules apply again
        decisions.append(Decision("flapping_stopped", _flap_text("stopped flapping", policy, rates)))
    if ok:
        next_state.failing_since = None
        next_state.passing_streak += 1
        if next_state.incident_id is None:
            return Transition(next_state)
        incident_id = next_state.incident_id
        if next_state.verifying:
            next_state.verifying = False
            next_state.last_heal = "succeeded"
            deed = policy.heal.deed if policy.heal is not None else "heal"
            decisions.append(Decision("heal_succeeded", f"check passed again after the {deed}"))
        if next_state.passing_streak >= policy.resolve_after:
            decisions.append(Decision("resolve", f"recovered: {next_state.passing_streak} passing results in a row"))
            return Transition(next_state.after_incident(), decisions, incident_id, incident_state=next_state)
        return Transition(next_state, decisions, incident_id)

    next_state.passing_streak = 0
    if next_state.failing_since is None:
        next_state.failing_since = started_at
    if next_state.incident_id is None:
        if policy.open_when is not None:
            share = rates.error_share
            if share is None or not policy.open_when.exceeded(share):
                return Transition(next_state)
            message = f"error rate {share:.3g}% ({policy.open_when}): {message}"
        elif started_at - next_state.failing_since < policy.open_after:
            return Transition(next_state)
        next_state.incident_id = new_incident_id()
        decisions.append(Decision("open", message))
    heal = None
    if policy.heal is not None:
        heal = _heal_step(next_state, started_at, policy.heal, budget, now, decisions)
    return Transition(next_state, decisions, next_state.incident_id, heal)


def _flap_step(
    state: CheckState, ok: bool, started_at: float, policy: Policy, rates: Rates, new_incident_id: Callable[[], str]
) -> Transition | None:
    """Updates ``state.flapping``; the transition while the check flaps (None: the usual rules decide)."""
    if policy.flapping is None or rates.flap_share is None:
        state.flapping = False
        return None
    was = state.flapping
    state.flapping = next_flapping(was, rates.flap_share, policy.flapping)
    if not state.flapping:
        return None
    # Flapping: the streaks go on, nothing resolves, nothing heals.
    if ok:
        state.failing_since = None
        state.passing_streak += 1
    else:
        state.passing_streak = 0
        if state.failing_since is None:
            state.failing_since = started_at
    if was:
        return Transition(state, [], state.incident_id)
    state.verifying = False  # a heal made before is not judged: the check flaps whatever it did
    text = _flap_text("flapping", policy, rates)
    if state.incident_id is None:
        state.incident_id = new_incident_id()
        return Transition(state, [Decision("open", text)], state.incident_id)
    return Transition(state, [Decision("flapping_started", text)], state.incident_id)


def _flap_text(what: str, policy: Policy, rates: Rates) -> str:
    if policy.flapping is None or rates.flap_share is None:
        return f"{what}: flapping is no longer watched"
    return (
        f"{what}: {rates.flap_share:.3g}% of the last {policy.flapping.window} results changed state"
        f" (weighted; high {policy.flapping.high:g}%, low {policy.flapping.low:g}%)"
    )


def _heal_step(
    state: CheckState, started_at: float, heal: HealPolicy, budget: HealBudget, now: float, out: list[Decision]
) -> HealKey | None:
    if heal.dry_run:
        if state.last_heal != "dry_run":
            state.last_heal = "dry_run"
            out.append(Decision("dry_run", f"dry run: would {heal.verb} {heal.subject} (heal is off)"))
        return None
    if state.cooldown_until is not None and started_at < state.cooldown_until:
        return None  # grace after a heal: a slow-booting service is not restarted in a loop
    if state.verifying:
        state.verifying = False
        state.last_heal = "failed"
        out.append(Decision("heal_failed", "check still failing when the cooldown ended"))
    if budget.allows(now, heal):
        state.restarts += 1
        state.cooldown_until = now + heal.cooldown
        state.verifying = True
        state.exhausted = False
        state.last_heal = "attempted"
        out.append(Decision("heal", f"{heal.verb_ing} {heal.subject}"))
        return heal.key
    if not state.exhausted:
        state.exhausted = True
        state.last_heal = "exhausted"
        used = budget.used(heal.key, now, heal.within)
        out.append(
            Decision(
                "heal_exhausted",
                f"{heal.verb} budget spent for {heal.subject}: "
                f"{used} of {heal.max_restarts} attempts used within {format_duration(heal.within)}",
            )
        )
    return None


def heal_call_failed(state: CheckState) -> CheckState:
    """The heal itself failed: that attempt is judged now, not after the cooldown."""
    return replace(state, verifying=False, last_heal="failed")
