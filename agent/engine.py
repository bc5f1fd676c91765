"""The one writer of incidents: every change to an incident goes through here.

``agent.incidents`` decides; the engine writes each decision — with its timeline entries, its
heal attempt and its events — in ONE transaction, and only once that commits does it adopt the
machine's new state, wake the outbox and start the slow parts (the heal, the evidence) as owned
background tasks. A write that fails changes nothing in memory: the check's next result decides
again, and ``problems()`` says so until a write succeeds. Results, evidence and heal outcomes
are written here too; the write API's commands (ack, updates, comments) will join them.
A reload adds, replaces (state and history kept) and removes tracked checks one by one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from agent.evidence import HISTORY_LIMIT as HISTORY
from agent.incidents import CheckState, Decision, HealBudget, Policy, Transition, evaluate, heal_call_failed
from agent.metrics import EngineTally
from agent.redact import value_masker
from agent.routing import NotifierFilter, recipients
from agent.store import Change, ResultRow, Store, new_id
from checks.base import CheckResult

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
}


@dataclass(frozen=True, slots=True)
class CheckView:
    """One check as the API shows it: what it probes and how it last did."""

    name: str
    type: str
    target: str
    last: CheckResult | None
    incident_id: str | None


@dataclass(slots=True)
class Tracked:
    """One configured check and everything the engine remembers of it."""

    check: AnyCheck
    policy: Policy
    healer: Healer | None = None
    state: CheckState = field(default_factory=CheckState)
    history: deque[CheckResult] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def config(self) -> Any:
        return self.check.config

    @property
    def last(self) -> CheckResult | None:
        return self.history[-1] if self.history else None

    @property
    def evidence_container(self) -> str | None:
        """The container whose logs and state go into the evidence: the check's, else its heal's."""
        container: str | None = self.config.container
        return container or (self.healer.container if self.healer is not None else None)


def track(check: AnyCheck, clients: HealClients | None, *, heal_enabled: bool = True) -> Tracked:
    """A check with its policy and its healer, built from its config."""
    from actions.healers import build_healer

    heal = check.config.heal
    healer = build_healer(heal.kind, heal.target, clients) if heal is not None and clients is not None else None
    return Tracked(check, Policy.for_check(check.config, heal, healer, heal_enabled=heal_enabled), healer)


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
    ) -> None:
        self.store = store
        self.clients = clients
        self.heal_enabled = heal_enabled
        self.tracked = {c.name: track(c, clients, heal_enabled=heal_enabled) for c in checks}
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

    # -- start -----------------------------------------------------------------------------
    async def restore(self) -> None:
        """Pick up where the last run stopped: open incidents, heal budget, recent results."""
        now = self.clock()
        longest = max((t.policy.heal.within for t in self.tracked.values() if t.policy.heal), default=0.0)
        self.budget = HealBudget(await self.store.run(self.store.heals.since, now - longest))
        for row in await self.store.run(self.store.incidents.open_rows):
            tracked = self.tracked.get(row["check_name"])
            if tracked is None:
                await self._resolve_removed(row, now)
                continue
            tracked.state = replace(CheckState.from_json(row["state"]), incident_id=row["id"])
            log.info("incident.restored", check=row["check_name"], incident_id=row["id"])
        for name, tracked in self.tracked.items():
            for r in await self.store.run(self.store.results.recent, name, HISTORY):
                tracked.history.append(CheckResult(name, r["ok"], r["started_at"], r["latency"], r["message"]))
            incident_id = tracked.state.incident_id
            if incident_id and (await self.store.run(self.store.evidence.get, incident_id))["opened"] is None:
                # The last run died before collecting it: late evidence beats none.
                self._evidence_done.setdefault((incident_id, "opened"), asyncio.Event())
                self._spawn(self._collect_evidence(tracked, incident_id, "opened", None, list(tracked.history)))

    async def _resolve_removed(self, row: dict[str, Any], now: float, notifiers: list[str] | None = None) -> None:
        change = Change(
            incident_id=row["id"],
            at=now,
            update={"status": "resolved", "resolved_at": now, "resolve_reason": "check_removed"},
            timeline=[("resolved", "check removed from the config")],
            events=[("incident.resolved", None)],
            notifiers=self._notify_all if notifiers is None else notifiers,
        )
        self._filter(change, row["severity"])
        await self.store.run(self.store.apply, change)
        log.info("incident.resolved", check=row["check_name"], incident_id=row["id"], reason="check_removed")
        self.on_events()

    # -- a reload --------------------------------------------------------------------------
    async def add_check(self, check: AnyCheck) -> None:
        """Track a check a reload added, with the results the store still has of that name."""
        tracked = track(check, self.clients, heal_enabled=self.heal_enabled)
        for r in await self.store.run(self.store.results.recent, check.name, HISTORY):
            tracked.history.append(CheckResult(check.name, r["ok"], r["started_at"], r["latency"], r["message"]))
        self.tracked[check.name] = tracked

    async def replace_check(self, check: AnyCheck) -> None:
        """A changed check: its new definition, with its state (open incident included) and history."""
        old = self.tracked[check.name]
        async with old.lock:
            new = track(check, self.clients, heal_enabled=self.heal_enabled)
            new.state, new.history, new.lock = old.state, old.history, old.lock
            self.tracked[check.name] = new

    async def remove_check(self, name: str) -> None:
        """Stop tracking a check; its open incident resolves with ``check_removed``."""
        tracked = self.tracked.get(name)
        if tracked is None:
            return
        async with tracked.lock:
            del self.tracked[name]
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
        async with tracked.lock:
            # A reload may have replaced it meanwhile (the replacement shares this lock) or removed it.
            current = self.tracked.get(result.check)
            if current is None:
                return
            tracked = current
            previous = tracked.last
            # History keeps the short form: a response body per result would cost ~100 MB at 1,000
            # checks. The failing result itself (with its response) goes to evidence directly.
            tracked.history.append(replace(result, details={}) if result.details else result)
            self._unsaved.append((result.check, result.started_at, result.ok, result.latency, result.message))
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
            now = self.clock()
            transition = evaluate(
                tracked.state,
                result.ok,
                result.started_at,
                tracked.policy,
                self.budget,
                now,
                result.message,
                new_incident_id=lambda: new_id("inc", now),
            )
            if not transition.decisions:
                tracked.state = transition.state
                return
            await self._apply(tracked, result, transition, now)

    async def _apply(self, tracked: Tracked, result: CheckResult, transition: Transition, now: float) -> None:
        cfg = tracked.config
        incident_id = transition.incident_id
        assert incident_id is not None
        change = Change(incident_id=incident_id, at=now, notifiers=cfg.notify, heal_attempt=transition.heal)
        for d in transition.decisions:
            kind, event, reason, _ = _RECORDS[d.kind]
            if d.kind == "open":
                change.create = {
                    "check_name": cfg.name,
                    "check_type": cfg.type,
                    "target": tracked.check.target,
                    "container": tracked.evidence_container,
                    "status": "open",
                    "severity": cfg.severity,
                    "title": f"{cfg.name} failing: {result.message}",
                    "opened_at": now,
                    "max_restarts": cfg.heal.max_restarts if cfg.heal else None,
                    "tags": json.dumps(list(cfg.tags)),
                }
            elif d.kind == "resolve":
                change.update.update({"status": "resolved", "resolved_at": now, "resolve_reason": "recovered"})
            change.timeline.append((kind, d.message or result.message))
            if event:
                change.events.append((event, reason))
        change.state = transition.stored_state.to_json()
        self._filter(change, cfg.severity)
        if not await self._write(change, check=cfg.name):
            return  # nothing adopted: the next result decides again
        tracked.state = transition.state
        if transition.heal is not None:
            self.budget.record(transition.heal, now)
        for d in transition.decisions:
            log.info(_RECORDS[d.kind][3], check=cfg.name, incident_id=incident_id, message=d.message or result.message)
        if change.events:
            self.on_events()
        kinds = set(transition.kinds())
        if "open" in kinds:
            self.tally.incident_opened(cfg.severity)
            # Registered before any task runs, so a heal spawned below always finds it.
            self._evidence_done.setdefault((incident_id, "opened"), asyncio.Event())
            self._spawn(self._collect_evidence(tracked, incident_id, "opened", result, list(tracked.history)))
        if "resolve" in kinds:
            self._spawn(self._collect_evidence(tracked, incident_id, "resolved", None, list(tracked.history)))
        if "heal" in kinds and tracked.healer is not None:
            self._spawn(self._heal(tracked, incident_id, tracked.healer))

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
        outcome = await healer.heal()
        self.tally.healed(healer.kind, healer.target, outcome.ok)
        log.info(
            "heal.restart" if healer.kind == "restart_container" else "heal.done",
            check=tracked.config.name, incident_id=incident_id, kind=healer.kind,
            target=healer.target, container=healer.container, ok=outcome.ok, message=outcome.message,
        )
        if outcome.ok:
            return
        async with tracked.lock:
            if tracked.state.incident_id != incident_id:
                return
            state = heal_call_failed(tracked.state)
            change = Change(
                incident_id=incident_id,
                at=self.clock(),
                state=state.to_json(),
                timeline=[("heal_failed", f"{healer.verb} of '{healer.target}' failed: {outcome.message}")],
                events=[("incident.heal_failed", None)],
                notifiers=tracked.config.notify,
            )
            self._filter(change, tracked.config.severity)
            if not await self._write(change, check=tracked.config.name):
                return
            tracked.state = state
        log.warning("incident.heal_failed", check=tracked.config.name, incident_id=incident_id, message=outcome.message)
        self.on_events()

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
    async def flush_results(self) -> None:
        """Write the results gathered since the last flush; on failure keep them for the next one."""
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
        await self.flush_results()

    # -- what others read ------------------------------------------------------------------
    def check_views(self) -> list[CheckView]:
        return [
            CheckView(name, t.config.type, t.check.target, t.last, t.state.incident_id)
            for name, t in self.tracked.items()
        ]

    def incidents_open(self) -> dict[str, int]:
        """Open incidents per severity (restored ones included)."""
        found: dict[str, int] = {}
        for t in self.tracked.values():
            if t.state.incident_id is not None:
                found[t.config.severity] = found.get(t.config.severity, 0) + 1
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


__all__ = ["CheckView", "Decision", "Engine", "Tracked", "track"]
