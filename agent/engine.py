"""The one writer of incidents: every change to an incident goes through here.

``agent.incidents`` decides; the engine writes each decision — with its timeline entries, its
heal attempt and its events — in ONE transaction, and only once that commits does it adopt the
machine's new state, wake the outbox and start the slow parts (the heal, the evidence) as owned
background tasks. A write that fails changes nothing in memory: the check's next result decides
again, and ``problems()`` says so until a write succeeds. Results, evidence and heal outcomes
are written here too, and so are the commands of the people running an incident (acknowledge,
comment, post a status update, open one by hand, change it, resolve it): each one transaction
with its timeline entry (with its author) and its event, held under the same lock as the
check's results, and refused as a whole (``IncidentConflict``) when it makes no sense.
A reload adds, replaces (state and history kept) and removes tracked checks one by one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from agent.baseline import Baselines
from agent.dependencies import DOCKER_CHECK, Cause, Dependencies
from agent.durations import format_duration
from agent.evidence import HISTORY_LIMIT as HISTORY
from agent.history import History
from agent.incidents import (
    CheckState,
    Decision,
    HealBudget,
    Policy,
    Transition,
    evaluate,
    heal_call_failed,
    most_severe,
)
from agent.keyed_lock import KeyedLock
from agent.maintenance import EXPIRED_LISTED, SILENCE_PREFIX, Match, Quiet, Silence, Window, quiet_for, silence_view
from agent.metrics import EngineTally
from agent.policies import DEFAULT_POSTMORTEM_AFTER, Due, PoliciesConfig, due, postmortem_required
from agent.rates import CheckRates
from agent.redact import value_masker
from agent.routing import NotifierFilter, recipients
from agent.severity_rules import Facts, raised
from agent.store import Change, ResultRow, Store, new_id
from agent.timefmt import iso
from checks.base import CheckResult, shown_details

if TYPE_CHECKING:  # pragma: no cover
    from actions.healers.base import HealClients, Healer
    from agent.evidence import EvidenceCollector
    from checks.base import AnyCheck

log = structlog.get_logger("lifeguard.engine")

# A heal waits at most this long for the opening evidence (itself bounded at ~3 s), so the bundle
# shows the container as it failed, not as the heal left it.
EVIDENCE_BEFORE_HEAL = 5.0
# Results kept in memory while the database refuses them (~100 bytes each).
MAX_UNSAVED_RESULTS = 100_000

# decision -> (timeline kind, event, event reason, log event)
_RECORDS: dict[str, tuple[str, str | None, str | None, str]] = {
    "open": ("opened", "incident.opened", None, "incident.opened"),
    "heal": ("heal_attempted", "incident.heal_attempted", None, "heal.attempted"),
    "dry_run": ("heal_attempted", None, None, "heal.dry_run"),
    "heal_succeeded": ("heal_succeeded", "incident.heal_succeeded", None, "heal.succeeded"),
    "heal_failed": ("heal_failed", "incident.heal_failed", None, "heal.failed"),
    "heal_exhausted": ("heal_exhausted", "incident.escalated", "heal_exhausted", "incident.escalated"),
    "resolve": ("resolved", "incident.resolved", None, "incident.resolved"),
    "flapping_started": ("flapping_started", "incident.updated", None, "incident.flapping"),
    "flapping_stopped": ("flapping_stopped", "incident.updated", None, "incident.flapping_stopped"),
}


PHASES = ("investigating", "identified", "monitoring", "resolved")
"""An incident's public phase, in the order it usually goes through them."""


class UnknownIncident(LookupError):
    """No incident has that id."""


class UnknownSilence(LookupError):
    """No silence has that id."""


class IncidentConflict(Exception):
    """The command makes no sense in the incident's state (a second resolve): nothing was changed."""


@dataclass(frozen=True, slots=True)
class IncidentPatch:
    """What a ``patch`` changes; None leaves a field as it is."""

    severity: str | None = None
    assignee: str | None = None
    tags: Sequence[str] | None = None
    root_cause: str | None = None
    solution: str | None = None
    follow_ups: Sequence[str] | None = None

    def unresolved_only(self) -> list[str]:
        """The fields given that only an unresolved incident takes."""
        return [n for n in ("severity", "assignee", "tags") if getattr(self, n) is not None]


@dataclass(frozen=True, slots=True)
class CheckView:
    """One check as the API shows it: what it probes and how it last did."""

    name: str
    type: str
    target: str
    last: CheckResult | None
    incident_id: str | None
    details: dict[str, Any] = field(default_factory=dict)  # the last result's, bounded (shown_details)
    flapping: bool = False
    baseline: float | None = None  # seconds: the rolling median latency, once there is one


@dataclass(slots=True)
class Tracked:
    """One configured check and everything the engine remembers of it."""

    check: AnyCheck
    policy: Policy
    healer: Healer | None = None
    state: CheckState = field(default_factory=CheckState)
    history: History = field(default_factory=lambda: History(HISTORY))
    last_details: dict[str, Any] = field(default_factory=dict)  # history drops details; the API shows these
    rates: CheckRates = field(default_factory=lambda: CheckRates(None, None))  # open_when, flapping

    @property
    def config(self) -> Any:
        return self.check.config

    @property
    def last(self) -> CheckResult | None:
        return self.history.last

    @property
    def severity(self) -> str:
        """Its open incident's severity now, else the check's own."""
        return self.state.severity or self.config.severity

    def raised_severity(self, state: CheckState, now: float) -> tuple[str, str] | None:
        """(severity, rule) a severity rule raises the incident in ``state`` to now, if any: never
        below what it is, nor twice to a level a rule already applied."""
        rules = [(r.when, r.severity) for r in self.config.severity_rules]
        if not rules:
            return None
        failing_for = None if state.failing_since is None else max(0.0, now - state.failing_since)
        facts = Facts(failing_for=failing_for, heal_attempts=state.restarts)
        return raised(rules, facts, most_severe(state.severity or self.config.severity, state.raised_to))

    @property
    def evidence_container(self) -> str | None:
        """The container whose logs and state go into the evidence: the check's, else its heal's."""
        container: str | None = self.config.container
        return container or (self.healer.container if self.healer is not None else None)


def track(check: AnyCheck, clients: HealClients | None, *, heal_enabled: bool = True) -> Tracked:
    """A check with its policy and its healer, built from its config."""
    from actions.healers import build_healer

    heal = check.config.heal
    healer = None
    if heal is not None and clients is not None:
        healer = build_healer(heal.kind, heal.target, clients, timeout=getattr(heal, "timeout", None))
    policy = Policy.for_check(check.config, heal, healer, heal_enabled=heal_enabled)
    return Tracked(check, policy, healer, rates=CheckRates(policy.open_when, policy.flapping))


class Engine:
    def __init__(
        self,
        store: Store,
        checks: Iterable[AnyCheck],
        *,
        heal_enabled: bool = True,
        clients: HealClients | None = None,
        evidence: EvidenceCollector | None = None,
        notify_all: Iterable[str] = (),
        on_events: Callable[[], None] = lambda: None,
        secrets: Iterable[str] = (),
        notifier_filters: Mapping[str, NotifierFilter] | None = None,
        clock: Callable[[], float] = time.time,
        policies: PoliciesConfig | None = None,
        maintenance: Sequence[Window] = (),
        postmortem_after: float = DEFAULT_POSTMORTEM_AFTER,
        on_resolved: Callable[[str], None] = lambda _incident_id: None,
    ) -> None:
        self.store = store
        self.policies = policies or PoliciesConfig()
        self.postmortem_after = postmortem_after
        self.on_resolved = on_resolved  # after a resolve committed (the postmortem writer listens)
        self.windows = list(maintenance)
        self._silences: dict[str, Silence] = {}
        self._in_maintenance: set[str] = set()  # open incidents recorded in maintenance, not yet notified
        self.clients = clients
        self.heal_enabled = heal_enabled
        self.tracked = {c.name: track(c, clients, heal_enabled=heal_enabled) for c in checks}
        self.baselines = Baselines(clock)  # CheckContext.baseline reads it (the daemon installs it)
        for t in self.tracked.values():
            self.baselines.watch(t.config)
        self.evidence = evidence
        self.on_events = on_events
        self.secrets = tuple(s for s in secrets if s)
        self.filters = dict(notifier_filters or {})
        self._mask = value_masker(self.secrets)
        self.clock = clock
        self.budget = HealBudget()
        self.tally = EngineTally()
        self._unsaved: list[ResultRow] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._evidence_done: dict[tuple[str, str], asyncio.Event] = {}
        self._notify_all = list(notify_all)
        self._write_error: str | None = None
        self._results_error: str | None = None
        self._locks = KeyedLock()  # a check's lock, by its name: held only while in use
        self._manual_lock = asyncio.Lock()  # commands on incidents no check's lock covers
        self._manual_open: dict[str, str] = {}  # unresolved incidents opened by hand -> severity
        self.deps = Dependencies(self)  # incidents held back by another one (depends_on, Docker)

    # -- start -----------------------------------------------------------------------------
    async def restore(self) -> None:
        """Pick up where the last run stopped: open incidents, heal budget, recent results."""
        now = self.clock()
        longest = max((t.policy.heal.within for t in self.tracked.values() if t.policy.heal), default=0.0)
        self.budget = HealBudget(await self.store.run(self.store.heals.since, now - longest))
        for row in await self.store.run(self.store.incidents.open_rows):
            if self.deps.restore(row):
                continue
            tracked = self.tracked.get(row["check_name"])
            if tracked is None:
                await self._resolve_removed(row, now)
                continue
            tracked.state = replace(CheckState.from_json(row["state"]), incident_id=row["id"], severity=row["severity"])
            if row.get("in_maintenance"):
                self._in_maintenance.add(row["id"])
            log.info("incident.restored", check=row["check_name"], incident_id=row["id"])
        await self._load_silences(now)
        self._manual_open = await self.store.run(self.store.incidents.manual_open)
        await self._seed_rates(now, list(self.tracked.values()))
        for name, tracked in self.tracked.items():
            for r in await self.store.run(self.store.results.recent, name, HISTORY):
                tracked.history.append(CheckResult(name, r["ok"], r["started_at"], r["latency"], r["message"]))
            incident_id = tracked.state.incident_id
            if incident_id and (await self.store.run(self.store.evidence.get, incident_id))["opened"] is None:
                # The last run died before collecting it: late evidence beats none.
                self._evidence_done.setdefault((incident_id, "opened"), asyncio.Event())
                self._spawn(self._collect_evidence(tracked, incident_id, "opened", None, list(tracked.history)))

    async def _seed_rates(self, now: float, tracked: list[Tracked]) -> None:
        """The windows of ``open_when``, flapping and the baselines go on from the stored results."""
        for t in tracked:
            seconds, results = t.rates.seed_span
            if seconds or results:
                t.rates.seed(await self.store.run(self.store.results.seeds, t.config.name, now - seconds, results))
        rules = {t.config.name: rule for t in tracked if (rule := t.config.baseline_rule) is not None}
        if not rules:
            return
        longest = max(rule.window for rule in rules.values())
        names = set(rules)
        rows = await self.store.run(self.store.baselines.since, int((now - longest) // 60))
        self.baselines.restore(row for row in rows if row[0] in names)

    async def _resolve_removed(self, row: dict[str, Any], now: float, notifiers: list[str] | None = None) -> None:
        change = Change(
            incident_id=row["id"],
            at=now,
            update={
                "status": "resolved", "resolved_at": now, "resolve_reason": "check_removed",
                **await self._postmortem_judged(row["id"], now),
            },
            timeline=[("resolved", "check removed from the config")],
            events=[("incident.resolved", None)],
            notifiers=self._notify_all if notifiers is None else notifiers,
        )
        self._filter(change, row["severity"])
        await self.store.run(self.store.apply, change)
        self.deps.after_resolve(row["id"])
        log.info("incident.resolved", check=row["check_name"], incident_id=row["id"], reason="check_removed")
        self.on_events()
        self.on_resolved(row["id"])

    # -- a reload --------------------------------------------------------------------------
    async def add_check(self, check: AnyCheck) -> None:
        """Track a check a reload added, with the results the store still has of that name."""
        tracked = track(check, self.clients, heal_enabled=self.heal_enabled)
        for r in await self.store.run(self.store.results.recent, check.name, HISTORY):
            tracked.history.append(CheckResult(check.name, r["ok"], r["started_at"], r["latency"], r["message"]))
        self.baselines.watch(check.config)
        await self._seed_rates(self.clock(), [tracked])
        self.tracked[check.name] = tracked

    async def replace_check(self, check: AnyCheck) -> None:
        """A changed check: its new definition, with its state (open incident included) and history."""
        old = self.tracked[check.name]
        async with self._locks(check.name):
            new = track(check, self.clients, heal_enabled=self.heal_enabled)
            new.state, new.history = old.state, old.history
            new.rates = old.rates.retuned(new.policy.open_when, new.policy.flapping)
            self.baselines.watch(check.config)
            self.tracked[check.name] = new

    async def remove_check(self, name: str) -> None:
        """Stop tracking a check; its open incident resolves with ``check_removed``."""
        tracked = self.tracked.get(name)
        if tracked is None:
            return
        async with self._locks(name):
            del self.tracked[name]
            self.baselines.forget(name)
            incident_id = tracked.state.incident_id
            if incident_id is None:
                return
            row = {"id": incident_id, "check_name": name, "severity": tracked.config.severity}
            try:
                await self._resolve_removed(row, self.clock(), list(tracked.config.notify))
            except Exception as exc:  # the store refused: the next start resolves it, as for any removed check
                self._write_error = f"{type(exc).__name__}: {exc}"
                log.error("engine.write_failed", check=name, incident_id=incident_id, error=self._write_error)

    def set_routing(self, notify_all: Iterable[str], filters: Mapping[str, NotifierFilter]) -> None:
        """The notifiers and their filters of a reloaded config."""
        self._notify_all = list(notify_all)
        self.filters = dict(filters)

    def set_policies(self, policies: PoliciesConfig) -> None:
        """The severity policies of a reloaded config: timers follow them from now on."""
        self.policies = policies

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """The secret values of a reloaded config, masked in every result message from now on."""
        self.secrets = tuple(s for s in secrets if s)
        self._mask = value_masker(self.secrets)

    # -- results ---------------------------------------------------------------------------
    async def on_result(self, result: CheckResult) -> None:
        # A message becomes a title, timeline entries, log lines and payloads: no configured secret.
        if (message := self._mask(result.message)) != result.message:
            result = replace(result, message=message)
        tracked = self.tracked.get(result.check)
        if tracked is None:  # the check was removed while this run was under way
            return
        async with self._locks(result.check):
            # A reload may have replaced it meanwhile (the lock is the name's) or removed it.
            current = self.tracked.get(result.check)
            if current is None:
                return
            tracked = current
            previous = tracked.last
            # History keeps the short form, compact (agent.history): no response bodies, a repeated
            # message once. The failing result itself (with its response) goes to evidence directly.
            kept = tracked.history.append(result)
            tracked.last_details = shown_details(result.details, self._mask) if result.details else {}
            self._unsaved.append((result.check, result.started_at, result.ok, result.latency, kept.message))
            log.debug(
                "check.completed",
                check=result.check,
                ok=result.ok,
                duration_ms=round(result.latency * 1000, 1),
                message=result.message,
            )
            if (previous is None and not result.ok) or (previous is not None and previous.ok != result.ok):
                log.info(
                    "check.recovered" if result.ok else "check.failing",
                    check=result.check,
                    message=result.message,
                    incident_id=tracked.state.incident_id,
                )
            rates = tracked.rates.observe(result.started_at, result.ok)
            if result.ok:
                self.baselines.record(result.check, result.started_at, result.latency)
            now = self.clock()
            quiet = self.quiet(tracked, now)
            cause = await self.deps.cause(tracked, result.ok)
            await self.deps.release_if_free(tracked, cause, not result.ok, now)
            await self._release_if_over(tracked, quiet, now)
            policy = tracked.policy
            if quiet is not None and not quiet.heal and policy.heal is not None:
                policy = replace(policy, heal=None)  # nothing healed in maintenance
            if (cause is not None or self.deps.holds(tracked.state.incident_id)) and policy.heal is not None:
                policy = replace(policy, heal=None)  # nothing healed while another incident holds it back
            transition = evaluate(
                tracked.state,
                result.ok and not (result.warning and tracked.config.open_on == "warning"),
                result.started_at,
                policy,
                self.budget,
                now,
                result.message,
                new_incident_id=lambda: new_id("inc", now),
                rates=rates,
            )
            if not transition.decisions:
                tracked.state = transition.state
            else:
                await self._apply(tracked, result, transition, now, quiet, cause)
            if tracked.state.incident_id is not None and tracked.config.severity_rules:
                await self._raise_severity(tracked, now, quiet)

    async def _apply(
        self,
        tracked: Tracked,
        result: CheckResult,
        transition: Transition,
        now: float,
        quiet: Quiet | None = None,
        cause: Cause | None = None,
    ) -> None:
        cfg = tracked.config
        incident_id = transition.incident_id
        assert incident_id is not None
        change = Change(incident_id=incident_id, at=now, notifiers=cfg.notify, heal_attempt=transition.heal)
        raised_by = None
        if "open" in transition.kinds():
            # A rule that already holds opens the incident at its severity: one event, not two.
            transition.state.severity = cfg.severity
            if (raised_by := tracked.raised_severity(transition.state, now)) is not None:
                transition.state.severity = transition.state.raised_to = raised_by[0]
        severity = transition.stored_state.severity or cfg.severity
        for d in transition.decisions:
            kind, event, reason, _ = _RECORDS[d.kind]
            if d.kind == "open":
                change.create = {
                    "check_name": cfg.name,
                    "check_type": cfg.type,
                    "target": tracked.check.target,
                    "container": tracked.evidence_container,
                    "status": "open",
                    "severity": severity,
                    "title": f"{cfg.name} {'warning' if result.ok else 'failing'}: {result.message}",
                    "opened_at": now,
                    "max_restarts": cfg.heal.max_restarts if cfg.heal else None,
                    "tags": json.dumps(list(cfg.tags)),
                    "failing_since": transition.state.failing_since,  # for MTTD: the state forgets it
                }
                if transition.state.flapping:
                    change.create |= {"title": f"{cfg.name} flapping", "flapping": 1}
            elif d.kind == "resolve":
                change.update.update({"status": "resolved", "resolved_at": now, "resolve_reason": "recovered"})
                change.update.update(await self._postmortem_judged(incident_id, now))
            elif d.kind in ("flapping_started", "flapping_stopped"):
                change.update["flapping"] = int(d.kind == "flapping_started")
                change.event_fields["incident.updated"] = {"changes": ["flapping"]}
            change.timeline.append((kind, self._mask(d.message) if d.message else result.message))
            if event:
                change.events.append((event, reason))
            if d.kind == "open" and raised_by is not None:
                change.timeline.append(("updated", f"severity {cfg.severity} → {severity} by rule: {raised_by[1]}"))
        change.state = transition.stored_state.to_json()
        opening = "open" in transition.kinds()
        held = (opening and cause is not None) or self.deps.holds(incident_id)
        silent = quiet is not None or incident_id in self._in_maintenance or held
        if opening and cause is not None:
            assert change.create is not None
            change.create.update(suppressed_by=cause.incident_id, cause_id=cause.incident_id)
            said = f"held back: {cause.check} has an open incident ({cause.incident_id}); nothing sent, nothing healed"
            change.timeline.append(("suppressed", said))
        if silent:
            # Recorded, not sent: the timeline says so, and the end of the window notifies it.
            change.events = []
            if opening and quiet is not None:
                assert change.create is not None
                change.create["in_maintenance"] = 1
                heals = "heals run" if quiet.heal else "nothing healed"
                change.timeline.append(("maintenance", f"in maintenance ({quiet.name}): nothing sent, {heals}"))
        self._filter(change, severity)
        if not await self._write(change, check=cfg.name):
            return  # nothing adopted: the next result decides again
        tracked.state = transition.state
        if opening and silent and quiet is not None:
            self._in_maintenance.add(incident_id)
        if opening and cause is not None:
            self.deps.opened(incident_id, cause, cfg.name)
        if "resolve" in transition.kinds():
            self._in_maintenance.discard(incident_id)
            self.deps.after_resolve(incident_id)
        if transition.heal is not None:
            self.budget.record(transition.heal, now)
        for d in transition.decisions:
            log.info(_RECORDS[d.kind][3], check=cfg.name, incident_id=incident_id, message=d.message or result.message)
        if change.events:
            self.on_events()
        kinds = set(transition.kinds())
        if "open" in kinds:
            self.tally.incident_opened(severity)
            # Registered before any task runs, so a heal spawned below always finds it.
            self._evidence_done.setdefault((incident_id, "opened"), asyncio.Event())
            self._spawn(self._collect_evidence(tracked, incident_id, "opened", result, list(tracked.history)))
        if "resolve" in kinds:
            self._evidence_done.setdefault((incident_id, "resolved"), asyncio.Event())
            self._spawn(self._collect_evidence(tracked, incident_id, "resolved", None, list(tracked.history)))
            self.on_resolved(incident_id)
        if "heal" in kinds and tracked.healer is not None:
            self._spawn(self._heal(tracked, incident_id, tracked.healer))

    async def _raise_severity(self, tracked: Tracked, now: float, quiet: Quiet | None) -> None:
        """Under the check's lock: a severity rule that now holds raises its open incident."""
        found = tracked.raised_severity(tracked.state, now)
        if found is None:
            return
        severity, rule = found
        incident_id = tracked.state.incident_id
        assert incident_id is not None
        before = tracked.severity
        state = replace(tracked.state, severity=severity, raised_to=severity)
        change = Change(
            incident_id, now, author="severity_rules", notifiers=tracked.config.notify,
            update={"severity": severity}, state=state.to_json(),
            timeline=[("updated", f"severity {before} → {severity} by rule: {rule}")],
            events=[("incident.updated", None)],
            event_fields={"incident.updated": {"changes": ["severity"], "rule": rule}},
        )
        if quiet is not None or incident_id in self._in_maintenance or self.deps.holds(incident_id):
            change.events = []  # recorded; its release notifies it at its new severity
        self._filter(change, severity)
        if not await self._write(change, check=tracked.config.name):
            return
        tracked.state = state
        log.info("incident.updated", check=tracked.config.name, incident_id=incident_id,
                 changes=["severity"], severity=severity, rule=rule)
        if change.events:
            self.on_events()
    async def _postmortem_judged(self, incident_id: str, now: float) -> dict[str, Any]:
        """``postmortem_required`` of an incident resolving now, by its policy and how long it lasted."""
        row = await self.store.run(self.store.incidents.row, incident_id)
        if row is None:
            return {}
        policy = self.policies.of(row["severity"])
        return {"postmortem_required": int(postmortem_required(policy, row["opened_at"], now, self.postmortem_after))}

    async def record_postmortem(self, incident_id: str, path: str) -> dict[str, Any]:
        """Record where the incident's postmortem draft was written (once; nothing is sent)."""
        async with self._held(incident_id) as (row, tracked):
            if row.get("postmortem_path") == path:
                found = await self.store.run(self.store.incidents.get, incident_id)
                assert found is not None
                return found
            change = Change(
                incident_id, self.clock(), update={"postmortem_path": path},
                timeline=[("postmortem", f"postmortem draft written to {path}")],
            )
            await self.store.run(self.store.apply, change)
        log.info("incident.postmortem", incident_id=incident_id, path=path)
        found = await self.store.run(self.store.incidents.get, incident_id)
        assert found is not None
        return found

    def _filter(self, change: Change, severity: str) -> None:
        """Each event of the change goes to the check's notifiers whose filters take it."""
        for kind, _ in change.events:
            change.notifiers_for[kind] = recipients(change.notifiers, self.filters, kind, severity)

    async def _write(self, change: Change, *, check: str) -> bool:
        """Apply one change; on failure log it, remember it for ``problems()`` and say so."""
        try:
            await self.store.run(self.store.apply, change)
        except Exception as exc:  # a full disk or a locked database must not silence the check
            self._write_error = f"{type(exc).__name__}: {exc}"
            log.error("engine.write_failed", check=check, incident_id=change.incident_id, error=self._write_error)
            return False
        self._write_error = None
        return True

    # -- slow parts ------------------------------------------------------------------------
    async def _heal(self, tracked: Tracked, incident_id: str, healer: Healer) -> None:
        try:
            await asyncio.wait_for(self.evidence_ready(incident_id, "opened"), EVIDENCE_BEFORE_HEAL)
        except TimeoutError:
            log.warning("evidence.late", incident_id=incident_id, phase="opened", before="heal")
        from actions.healers.base import kept_output

        outcome = await healer.heal()
        message = self._mask(outcome.message)
        output = None if outcome.output is None else kept_output(outcome.output, outcome.output_bytes, self._mask)
        self.tally.healed(healer.kind, healer.target, outcome.ok)
        log.info(
            "heal.restart" if healer.kind == "restart_container" else "heal.done",
            check=tracked.config.name, incident_id=incident_id, kind=healer.kind,
            target=healer.target, container=healer.container, ok=outcome.ok, message=message,
        )
        if output is not None:
            await self._keep_heal_output(tracked, incident_id, healer, outcome.ok, message, output)
        if outcome.ok:
            return
        async with self._locks(tracked.config.name):
            if tracked.state.incident_id != incident_id:
                return
            state = heal_call_failed(tracked.state)
            change = Change(
                incident_id=incident_id,
                at=self.clock(),
                state=state.to_json(),
                timeline=[("heal_failed", self._mask(f"{healer.verb} of '{healer.target}' failed: {message}"))],
                events=[("incident.heal_failed", None)],
                notifiers=tracked.config.notify,
            )
            self._filter(change, tracked.severity)
            if not await self._write(change, check=tracked.config.name):
                return
            tracked.state = state
        log.warning("incident.heal_failed", check=tracked.config.name, incident_id=incident_id, message=message)
        self.on_events()

    async def _keep_heal_output(
        self, tracked: Tracked, incident_id: str, healer: Healer, ok: bool, message: str, output: str
    ) -> None:
        """What a heal printed (masked, cut to size): a ``heal_output`` timeline entry (no event)
        and an entry of the opened evidence's ``heals``. Best effort, as evidence is."""
        now = self.clock()
        change = Change(incident_id=incident_id, at=now, timeline=[("heal_output", output or "(no output)")])
        entry = {"at": iso(now), "kind": healer.kind, "target": self._mask(healer.target), "ok": ok,
                 "message": message, "output": output}  # fmt: skip
        try:
            await self.store.run(self.store.apply, change)
            await self.store.run(self.store.evidence.add_heal, incident_id, now, entry)
        except Exception as exc:
            log.error("heal.output_lost", check=tracked.config.name, incident_id=incident_id, error=str(exc))

    async def _collect_evidence(
        self,
        tracked: Tracked,
        incident_id: str,
        phase: str,
        failing: CheckResult | None,
        history: list[CheckResult],  # as it was at the decision, not when this task gets to run
    ) -> None:
        done = self._evidence_done.setdefault((incident_id, phase), asyncio.Event())
        try:
            if self.evidence is None:
                return
            bundle = await self.evidence.collect(
                phase=phase,
                history=history,
                failing=failing,
                container=tracked.evidence_container,
                extra_secrets=self.secrets,
            )
            bundle.update(await self.deps.evidence(incident_id))
            await self.store.run(self.store.evidence.save, incident_id, phase, self.clock(), bundle)
            log.info("evidence.collected", check=tracked.config.name, incident_id=incident_id, phase=phase)
        except Exception as exc:  # evidence is best effort; the incident goes on without it
            log.error("evidence.failed", incident_id=incident_id, phase=phase, error=str(exc))
        finally:
            done.set()
            asyncio.get_running_loop().call_later(60, self._evidence_done.pop, (incident_id, phase), None)

    async def evidence_ready(self, incident_id: str, phase: str) -> None:
        """Wait for this process's collection of that evidence, if one is under way."""
        event = self._evidence_done.get((incident_id, phase))
        if event is not None:
            await event.wait()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- upkeep ----------------------------------------------------------------------------
    async def flush_results(self, *, final: bool = False) -> None:
        """Write the results (and the baselines' minutes that are over; ``final``: all) gathered
        since the last flush; on failure keep them for the next one."""
        if minutes := self.baselines.pending(everything=final):
            try:
                await self.store.run(self.store.baselines.save, minutes)
            except Exception as exc:  # written with the next flush
                self.baselines.retry(minutes)
                log.warning("baselines.flush_failed", minutes=len(minutes), error=f"{type(exc).__name__}: {exc}")
        rows, self._unsaved = self._unsaved, []
        if not rows:
            return
        try:
            await self.store.run(self.store.results.add, rows)
        except Exception as exc:
            kept = (rows + self._unsaved)[-MAX_UNSAVED_RESULTS:]
            self._unsaved = kept
            self._results_error = f"{type(exc).__name__}: {exc}"
            log.warning("results.flush_failed", rows=len(rows), kept=len(kept), error=self._results_error)
            return
        self._results_error = None

    async def drain(self, timeout: float) -> None:
        """Let heals and evidence under way finish (bounded), then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.flush_results(final=True)

    # -- commands of the people running an incident ---------------------------------------
    @asynccontextmanager
    async def _held(self, incident_id: str) -> AsyncIterator[tuple[dict[str, Any], Tracked | None]]:
        """The incident's row under its check's lock (a manual one's under the engine's), and
        its check if that check's machine still follows this incident."""
        row = await self.store.run(self.store.incidents.row, incident_id)
        if row is None:
            raise UnknownIncident(incident_id)
        tracked = None if row["manual"] else self.tracked.get(row["check_name"])
        async with self._locks(tracked.config.name) if tracked is not None else self._manual_lock:
            row = await self.store.run(self.store.incidents.row, incident_id)
            assert row is not None  # incidents are never deleted
            current = None if row["manual"] else self.tracked.get(row["check_name"])
            if current is not None and current.state.incident_id != incident_id:
                current = None
            yield row, current

    async def _command(self, row: dict[str, Any], tracked: Tracked | None, change: Change) -> dict[str, Any]:
        """Write one command's change; its events go to the incident's notifiers that take them."""
        change.notifiers = tracked.config.notify if tracked is not None else self._notify_all
        self._filter(change, change.update.get("severity", row["severity"]))
        if change.comment is not None and change.comment[2]:  # an internal comment: internal notifiers only
            kind = "incident.commented"
            change.notifiers_for[kind] = [
                n for n in change.notifiers_for[kind] if self.filters.get(n, NotifierFilter()).internal
            ]
        await self.store.run(self.store.apply, change)  # a refusal propagates: nothing was adopted
        self._write_error = None
        if change.events:
            self.on_events()
        found = await self.store.run(self.store.incidents.get, change.incident_id)
        assert found is not None
        return found

    async def acknowledge(self, incident_id: str, by: str) -> dict[str, Any]:
        """Someone is on it. A resolved or already acknowledged incident is a conflict."""
        async with self._held(incident_id) as (row, tracked):
            if row["status"] != "open":
                raise IncidentConflict(f"incident {incident_id} is {row['status']}" + _by(row, row["status"]))
            now = self.clock()
            change = Change(
                incident_id, now, author=by,
                update={"status": "acknowledged", "acknowledged_at": now, "acknowledged_by": by},
                timeline=[("acknowledged", f"acknowledged by {by}")],
                events=[("incident.acknowledged", None)],
            )
            found = await self._command(row, tracked, change)
        log.info("incident.acknowledged", incident_id=incident_id, by=by)
        return found

    async def comment(self, incident_id: str, author: str, text: str, internal: bool = False) -> dict[str, Any]:
        """A comment, on any incident. An internal one goes only to notifiers with ``internal: true``,
        and its text never enters the incident's snapshot that events carry."""
        async with self._held(incident_id) as (row, tracked):
            now = self.clock()
            change = Change(
                incident_id, now, author=author,
                comment=(author, text, internal),
                timeline=[("commented", f"internal comment by {author}" if internal else f"{author}: {text}")],
                events=[("incident.commented", None)],
                event_fields={
                    "incident.commented": {
                        "comment": {"author": author, "text": text, "internal": internal, "at": iso(now)}
                    }
                },
            )
            found = await self._command(row, tracked, change)
        log.info("incident.commented", incident_id=incident_id, author=author, internal=internal)
        return found

    async def post_update(self, incident_id: str, phase: str, message: str, author: str) -> dict[str, Any]:
        """A public status update: the incident's phase and what the status page and chat show.
        Only on an unresolved incident, and never ``resolved`` (resolving is its own command)."""
        if phase not in PHASES:
            raise ValueError(f"phase: expected one of {', '.join(PHASES)}, got {phase!r}")
        async with self._held(incident_id) as (row, tracked):
            if row["status"] == "resolved":
                raise IncidentConflict(f"incident {incident_id} is resolved" + _by(row, "resolved"))
            if phase == "resolved":
                raise IncidentConflict("phase resolved: resolve the incident instead")
            now = self.clock()
            changes = ["update"] + (["phase"] if phase != row["phase"] else [])
            change = Change(
                incident_id, now, author=author,
                update={"phase": phase},
                status_update=(author, phase, message),
                timeline=[("status_update", f"{phase}: {message}")],
                events=[("incident.updated", None)],
                event_fields={
                    "incident.updated": {
                        "changes": changes,
                        "update": {"author": author, "phase": phase, "message": message, "at": iso(now)},
                    }
                },
            )
            found = await self._command(row, tracked, change)
        log.info("incident.status_update", incident_id=incident_id, author=author, phase=phase)
        return found

    async def open_manual(
        self,
        title: str,
        severity: str,
        by: str,
        *,
        description: str | None = None,
        affected_services: Sequence[str] = (),
        tags: Sequence[str] = (),
        assignee: str | None = None,
    ) -> dict[str, Any]:
        """An incident opened by hand: tied to no check, so never resolved by recovery nor healed."""
        now = self.clock()
        incident_id = new_id("inc", now)
        change = Change(
            incident_id, now, author=by,
            create={
                "check_name": "", "check_type": "manual", "target": "", "container": None,
                "status": "open", "severity": severity, "title": title, "opened_at": now,
                "max_restarts": None, "tags": json.dumps(list(tags)), "manual": 1,
                "description": description, "affected_services": json.dumps(list(affected_services)),
                "assignee": assignee,
            },
            timeline=[("opened", f"opened by hand by {by}: {title}")],
            events=[("incident.opened", None)],
        )
        async with self._manual_lock:
            found = await self._command({"severity": severity}, None, change)
            self._manual_open[incident_id] = severity
        self.tally.incident_opened(severity)
        log.info("incident.opened", incident_id=incident_id, manual=True, by=by, severity=severity)
        return found

    async def patch(self, incident_id: str, changes: IncidentPatch, by: str) -> dict[str, Any]:
        """Change severity, assignee or tags of an unresolved incident, and the resolution fields of
        any; only what differs is written, and nothing at all (no event) when nothing does."""
        async with self._held(incident_id) as (row, tracked):
            if row["status"] == "resolved" and (refused := changes.unresolved_only()):
                raise IncidentConflict(
                    f"incident {incident_id} is resolved: only root_cause, solution and follow_ups change"
                    f" (not {', '.join(refused)})"
                )
            wanted: dict[str, Any] = {
                "severity": changes.severity,
                "assignee": changes.assignee,
                "tags": None if changes.tags is None else json.dumps(list(changes.tags)),
                "root_cause": changes.root_cause,
                "solution": changes.solution,
                "follow_ups": None if changes.follow_ups is None else json.dumps(list(changes.follow_ups)),
            }
            update = {k: v for k, v in wanted.items() if v is not None and v != row[k]}
            if not update:
                found = await self.store.run(self.store.incidents.get, incident_id)
                assert found is not None
                return found
            said = ", ".join(f"{k} {row[k]} → {v}" if k in ("severity", "assignee") else k for k, v in update.items())
            change = Change(
                incident_id, self.clock(), author=by, update=update,
                timeline=[("updated", f"{said} (by {by})")],
                events=[("incident.updated", None)],
                event_fields={"incident.updated": {"changes": list(update)}},
            )
            found = await self._command(row, tracked, change)
            if tracked is not None and "severity" in update:
                tracked.state = replace(tracked.state, severity=update["severity"])
            if row["manual"] and "severity" in update:
                self._manual_open[incident_id] = update["severity"]
        log.info("incident.updated", incident_id=incident_id, by=by, changes=list(update))
        return found

    async def resolve(
        self,
        incident_id: str,
        by: str,
        *,
        root_cause: str | None = None,
        solution: str | None = None,
        follow_ups: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Resolve by hand. A check's machine starts afresh, so its next failure opens a new incident;
        a second resolve is a conflict."""
        async with self._held(incident_id) as (row, tracked):
            if row["status"] == "resolved":
                raise IncidentConflict(f"incident {incident_id} is already resolved" + _by(row, "resolved"))
            now = self.clock()
            resolution = {
                k: v
                for k, v in (("root_cause", root_cause), ("solution", solution)) if v is not None
            } | ({} if follow_ups is None else {"follow_ups": list(follow_ups)})
            state = tracked.state.after_incident() if tracked is not None else None
            change = Change(
                incident_id, now, author=by,
                update={
                    "status": "resolved", "resolved_at": now, "resolve_reason": "by_hand", "resolved_by": by,
                    "phase": "resolved",
                    "postmortem_required": int(
                        postmortem_required(
                            self.policies.of(row["severity"]), row["opened_at"], now, self.postmortem_after
                        )
                    ),
                    **{k: json.dumps(v) if k == "follow_ups" else v for k, v in resolution.items()},
                },
                state=None if state is None else state.to_json(),
                timeline=[("resolved", f"resolved by {by}")],
                events=[("incident.resolved", None)],
                event_fields={"incident.resolved": {"resolved_by": by, **resolution}},
            )
            found = await self._command(row, tracked, change)
            self._in_maintenance.discard(incident_id)
            self._manual_open.pop(incident_id, None)
            self.deps.after_resolve(incident_id)
            if tracked is not None and state is not None:
                tracked.state = state
        log.info("incident.resolved", incident_id=incident_id, by=by, reason="by_hand")
        self.on_resolved(incident_id)
        return found

    async def fire_policy(self, item: Due) -> bool:
        """Record what an incident's policy asks for now (an escalation step, ``ack_overdue``, a
        reminder) with its event, unless it is no longer due — acknowledged, resolved, or already
        on the timeline (another tick, the run before a restart). True if it was written."""
        async with self._held(item.incident_id) as (row, tracked):
            if row["status"] == "resolved":
                return False
            clocks = await self.store.run(self.store.incidents.clocks)
            clock = next((c for c in clocks if c.incident_id == item.incident_id), None)
            now = self.clock()
            if clock is None or item not in due(clock, self.policies.of(row["severity"]), now):
                return False
            waited = format_duration(item.after)
            change = Change(item.incident_id, now)
            if item.kind == "escalate":
                change.timeline.append(
                    ("escalated", f"level {item.level}: unacknowledged for {waited}, paging {', '.join(item.notify)}")
                )
                change.events.append(("incident.escalated", "unacknowledged"))
                change.event_fields["incident.escalated"] = {"level": item.level, "notify": list(item.notify)}
            elif item.kind == "ack_overdue":
                change.timeline.append(("ack_overdue", f"not acknowledged within {waited}"))
            elif item.kind == "remind_unacknowledged":
                change.timeline.append(("reminder", f"unacknowledged: nobody has acknowledged it ({waited} reminder)"))
                change.events.append(("incident.reminder", "unacknowledged"))
            else:
                change.timeline.append(("reminder", f"update_due: no status update within {waited}"))
                change.events.append(("incident.reminder", "update_due"))
            own = list(tracked.config.notify) if tracked is not None else self._notify_all
            if row["manual"] == 0 and tracked is None and (current := self.tracked.get(row["check_name"])):
                own = list(current.config.notify)
            if row["check_type"] == DOCKER_CHECK:
                own = self.deps.docker_notify  # the engine's own incident: the config's defaults.notify
            change.notifiers = own
            self._filter(change, row["severity"])
            if item.kind == "escalate":
                # The step's notifiers hear of it in addition to the incident's own (their filters apply).
                extra = recipients(list(item.notify), self.filters, "incident.escalated", row["severity"])
                extra = [n for n in extra if n in self._notify_all]  # a step may name one not configured
                taken = list(change.notifiers_for["incident.escalated"])
                change.notifiers_for["incident.escalated"] = taken + [n for n in extra if n not in taken]
            await self.store.run(self.store.apply, change)
            self._write_error = None
        if change.events:
            self.on_events()
        log.info("incident.policy", incident_id=item.incident_id, kind=item.kind, level=item.level or None)
        return True

    # -- maintenance ------------------------------------------------------------------------
    def quiet(self, tracked: Tracked, now: float) -> Quiet | None:
        """The window or silence the check is under now, or None."""
        cfg = tracked.config
        return quiet_for(self.windows, self._silences.values(), now, cfg.name, cfg.tags, tracked.evidence_container)

    def set_maintenance(self, windows: Iterable[Window]) -> None:
        """The maintenance windows of a reloaded config."""
        self.windows = list(windows)

    async def _release_if_over(self, tracked: Tracked, quiet: Quiet | None, now: float) -> None:
        """Under the check's lock: its incident recorded in maintenance is notified, once, when
        nothing silences the check any more — as if it had just opened."""
        incident_id = tracked.state.incident_id
        if quiet is not None or incident_id is None or incident_id not in self._in_maintenance:
            return
        if self.deps.holds(incident_id):
            return  # another incident still holds it back: its release notifies it
        change = Change(
            incident_id, now, notifiers=tracked.config.notify,
            update={"in_maintenance": 0},
            timeline=[("maintenance_ended", "maintenance over with the incident still open: notified now")],
            events=[("incident.opened", None)],
        )
        self._filter(change, tracked.severity)
        if not await self._write(change, check=tracked.config.name):
            return  # the next result or tick tries again
        self._in_maintenance.discard(incident_id)
        log.info("incident.released", check=tracked.config.name, incident_id=incident_id)
        self.on_events()

    async def release_maintenance(self) -> None:
        """Notify every incident whose maintenance is over (the daemon calls this every few seconds)."""
        for tracked in list(self.tracked.values()):
            if tracked.state.incident_id not in self._in_maintenance:
                continue
            async with self._locks(tracked.config.name):
                if self.tracked.get(tracked.config.name) is tracked:
                    await self._release_if_over(tracked, self.quiet(tracked, self.clock()), self.clock())

    async def _load_silences(self, now: float) -> None:
        rows = await self.store.run(self.store.silences.ending_after, now)
        self._silences = {r["id"]: Silence(r["id"], Match.of(r["match"]), r["starts_at"], r["ends_at"]) for r in rows}

    async def add_silence(
        self, match: Match, ends_at: float, comment: str | None, created_by: str
    ) -> dict[str, Any]:
        """A silence from now until ``ends_at``."""
        now = self.clock()
        silence_id = new_id(SILENCE_PREFIX, now)
        row = await self.store.run(
            self.store.silences.add, silence_id, match.view(), now, ends_at, comment, created_by
        )
        self._silences[silence_id] = Silence(silence_id, match, now, ends_at)
        log.info("silence.added", silence_id=silence_id, match=match.view(), by=created_by)
        return silence_view(row, now)

    async def silences(self) -> list[dict[str, Any]]:
        """Active silences and those expired within ``EXPIRED_LISTED``, newest first."""
        now = self.clock()
        rows = await self.store.run(self.store.silences.ending_after, now - EXPIRED_LISTED)
        return [silence_view(r, now) for r in rows]

    async def remove_silence(self, silence_id: str) -> dict[str, Any]:
        """End a silence now (it stays listed as expired); what it silenced is released at once."""
        now = self.clock()
        row = await self.store.run(self.store.silences.end, silence_id, now)
        if row is None:
            raise UnknownSilence(silence_id)
        self._silences.pop(silence_id, None)
        log.info("silence.removed", silence_id=silence_id)
        await self.release_maintenance()
        return silence_view(row, now)

    # -- what others read ------------------------------------------------------------------
    def check_views(self) -> list[CheckView]:
        return [
            CheckView(
                name, t.config.type, t.check.target, t.last, t.state.incident_id, t.last_details,
                flapping=t.state.flapping, baseline=self.baselines.median(name),
            )
            for name, t in self.tracked.items()
        ]

    def incidents_open(self) -> dict[str, int]:
        """Unresolved incidents per severity now (restored and manual ones included)."""
        found: dict[str, int] = {}
        severities = [t.severity for t in self.tracked.values() if t.state.incident_id is not None]
        for severity in [*severities, *self._manual_open.values()]:
            found[severity] = found.get(severity, 0) + 1
        return found

    def heal_budget_left(self, now: float | None = None) -> dict[tuple[str, str], int]:
        """Heals each (kind, target) may still have in its window now; the strictest policy if several share it."""
        now = self.clock() if now is None else now
        left: dict[tuple[str, str], int] = {}
        for t in self.tracked.values():
            heal = t.policy.heal
            if heal is None:
                continue
            n = max(0, heal.max_restarts - self.budget.used(heal.key, now, heal.within))
            left[heal.key] = min(n, left.get(heal.key, n))
        return left

    def problems(self) -> list[str]:
        """What keeps the engine from remembering everything it should (for ``/health``)."""
        found = []
        if self._write_error:
            found.append(f"incident writes failing: {self._write_error}")
        if self._results_error:
            found.append(f"results not saved: {self._results_error}")
        return found


def _by(row: dict[str, Any], status: str) -> str:
    who = row.get("resolved_by") if status == "resolved" else row.get("acknowledged_by")
    return f" (by {who})" if who else ""


__all__ = [
    "PHASES",
    "CheckView",
    "Decision",
    "Engine",
    "IncidentConflict",
    "IncidentPatch",
    "Tracked",
    "UnknownIncident",
    "UnknownSilence",
    "track",
]
