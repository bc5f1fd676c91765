"""Applies the incident state machine's decisions: store, outbox, heal, evidence.

``agent.incidents`` decides; this module acts on the decisions in a fixed order: write the
change and its events in one transaction, wake the outbox, then start the slow parts (the
restart, the evidence) as owned background tasks so nothing slow holds a result back.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from agent.incidents import CheckState, Decision, HealBudget, Policy, evaluate, restart_call_failed
from agent.store import Change, Store, new_id
from checks.base import CheckResult

if TYPE_CHECKING:  # pragma: no cover
    from actions.healers.docker_restart import DockerRestartHealer
    from agent.evidence import EvidenceCollector
    from checks.base import Check

log = structlog.get_logger("lifeguard.engine")

HISTORY = 20  # results kept in memory per check: what evidence shows
# A heal waits at most this long for the opening evidence (itself bounded at ~3 s), so the bundle
# shows the container as it failed, not as the restart left it.
EVIDENCE_BEFORE_HEAL = 5.0

# decision -> (timeline kind, event, event reason)
_RECORDS: dict[str, tuple[str, str | None, str | None]] = {
    "open": ("opened", "incident.opened", None),
    "restart": ("heal_attempted", "incident.heal_attempted", None),
    "dry_run": ("heal_attempted", None, None),
    "heal_succeeded": ("heal_succeeded", "incident.heal_succeeded", None),
    "heal_failed": ("heal_failed", "incident.heal_failed", None),
    "heal_exhausted": ("heal_exhausted", "incident.escalated", "heal_exhausted"),
    "resolve": ("resolved", "incident.resolved", None),
}


@dataclass(slots=True)
class Tracked:
    """One configured check and everything the engine remembers of it."""

    check: Check
    policy: Policy
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
        cfg = self.config
        return cfg.container or (cfg.heal.target if cfg.heal else None)


class Engine:
    def __init__(
        self,
        store: Store,
        checks: Iterable[Check],
        *,
        heal_enabled: bool,
        healer: DockerRestartHealer | None,
        evidence: EvidenceCollector | None,
        notify_all: Iterable[str] = (),
        on_events: Callable[[], None] = lambda: None,
        secrets: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tracked = {
            c.name: Tracked(c, Policy.from_config(c.config, heal_enabled)) for c in checks
        }
        self.healer = healer
        self.evidence = evidence
        self.on_events = on_events
        self.secrets = tuple(s for s in secrets if s)
        self.clock = clock
        self.budget = HealBudget()
        self._pending_rows: list[tuple[str, float, bool, float, str]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._evidence_done: dict[tuple[str, str], asyncio.Event] = {}
        self._notify_all = list(notify_all)

    # -- start -----------------------------------------------------------------------------
    async def restore(self) -> None:
        """Pick up where the last run stopped: open incidents, heal budget, recent results."""
        now = self.clock()
        longest = max(
            (t.policy.heal.within for t in self.tracked.values() if t.policy.heal), default=0.0
        )
        self.budget = HealBudget(await self.store.run(self.store.heal_attempts, now - longest))
        for row in await self.store.run(self.store.open_incidents):
            tracked = self.tracked.get(row["check_name"])
            if tracked is None:
                await self._resolve_removed(row, now)
                continue
            tracked.state = CheckState.from_json(row["state"])
            tracked.state.incident_id = row["id"]
            log.info("incident.restored", check=row["check_name"], incident_id=row["id"])
        for name, tracked in self.tracked.items():
            for r in await self.store.run(self.store.recent_results, name, HISTORY):
                tracked.history.append(
                    CheckResult(name, r["ok"], r["started_at"], r["latency"], r["message"])
                )
            incident_id = tracked.state.incident_id
            if incident_id and (await self.store.run(self.store.evidence, incident_id))["opened"] is None:
                # The last run died before collecting it: late evidence beats none.
                self._evidence_done.setdefault((incident_id, "opened"), asyncio.Event())
                self._spawn(self._collect_evidence(tracked, incident_id, "opened", None, list(tracked.history)))

    async def _resolve_removed(self, row: dict[str, Any], now: float) -> None:
        change = Change(
            incident_id=row["id"],
            at=now,
            update={"status": "resolved", "resolved_at": now, "resolve_reason": "check_removed"},
            timeline=[("resolved", "check removed from the config")],
            events=[("incident.resolved", None)],
            notifiers=self._notify_all,
        )
        await self.store.run(self.store.apply, change)
        log.info("incident.resolved", check=row["check_name"], incident_id=row["id"], reason="check_removed")
        self.on_events()

    # -- results ---------------------------------------------------------------------------
    async def on_result(self, result: CheckResult) -> None:
        tracked = self.tracked[result.check]
        async with tracked.lock:
            previous = tracked.last
            # History keeps the short form: a response body per result would cost ~100 MB at 1,000
            # checks. The failing result itself (with its response) goes to evidence directly.
            tracked.history.append(replace(result, details={}) if result.details else result)
            self._pending_rows.append(
                (result.check, result.started_at, result.ok, result.latency, result.message)
            )
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
            decisions = evaluate(
                tracked.state,
                result.ok,
                result.started_at,
                tracked.policy,
                self.budget,
                self.clock(),
                result.message,
            )
            if decisions:
                await self._apply(tracked, result, decisions)

    async def _apply(self, tracked: Tracked, result: CheckResult, decisions: list[Decision]) -> None:
        cfg = tracked.config
        now = self.clock()
        state = tracked.state
        change = Change(incident_id=state.incident_id or "", at=now, notifiers=cfg.notify)
        resolved = False
        for d in decisions:
            kind, event, reason = _RECORDS[d.kind]
            if d.kind == "open":
                state.incident_id = change.incident_id = new_id("inc", now)
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
                }
            elif d.kind == "restart":
                change.heal_attempt = tracked.policy.heal.container  # type: ignore[union-attr]
            elif d.kind == "resolve":
                resolved = True
                change.update.update(
                    {"status": "resolved", "resolved_at": now, "resolve_reason": "recovered"}
                )
            change.timeline.append((kind, d.message or result.message))
            if event:
                change.events.append((event, reason))
        incident_id = change.incident_id
        change.state = state.to_json()
        await self.store.run(self.store.apply, change)
        for d in decisions:
            log.info(
                _LOG_NAMES[d.kind], check=cfg.name, incident_id=incident_id, message=d.message or result.message
            )
        if resolved:
            state.reset_incident()
        if change.events:
            self.on_events()
        kinds = {d.kind for d in decisions}
        if "open" in kinds:
            # Registered before any task runs, so a restart spawned below always finds it.
            self._evidence_done.setdefault((incident_id, "opened"), asyncio.Event())
            self._spawn(self._collect_evidence(tracked, incident_id, "opened", result, list(tracked.history)))
        if "resolve" in kinds:
            self._spawn(self._collect_evidence(tracked, incident_id, "resolved", None, list(tracked.history)))
        if "restart" in kinds and self.healer is not None:
            self._spawn(self._restart(tracked, incident_id, tracked.policy.heal.container))  # type: ignore[union-attr]

    # -- slow parts ------------------------------------------------------------------------
    async def _restart(self, tracked: Tracked, incident_id: str, container: str) -> None:
        assert self.healer is not None
        try:
            await asyncio.wait_for(self.evidence_ready(incident_id, "opened"), EVIDENCE_BEFORE_HEAL)
        except TimeoutError:
            log.warning("evidence.late", incident_id=incident_id, phase="opened", before="heal")
        outcome = await self.healer.heal(container)
        log.info(
            "heal.restart", check=tracked.config.name, incident_id=incident_id,
            container=container, ok=outcome.ok, message=outcome.message,
        )
        if outcome.ok:
            return
        async with tracked.lock:
            if tracked.state.incident_id != incident_id:
                return
            restart_call_failed(tracked.state)
            change = Change(
                incident_id=incident_id,
                at=self.clock(),
                state=tracked.state.to_json(),
                timeline=[("heal_failed", f"restart of '{container}' failed: {outcome.message}")],
                events=[("incident.heal_failed", None)],
                notifiers=tracked.config.notify,
            )
            await self.store.run(self.store.apply, change)
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
            await self.store.run(self.store.save_evidence, incident_id, phase, self.clock(), bundle)
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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- upkeep ----------------------------------------------------------------------------
    async def flush_results(self) -> None:
        rows, self._pending_rows = self._pending_rows, []
        if rows:
            await self.store.run(self.store.add_results, rows)

    async def drain(self, timeout: float) -> None:
        """Let heals and evidence under way finish (bounded), then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.flush_results()

    def checks_status(self) -> list[dict[str, Any]]:
        from agent.payload import iso

        out = []
        for name, t in self.tracked.items():
            last = t.last
            out.append(
                {
                    "name": name,
                    "type": t.config.type,
                    "target": t.check.target,
                    "state": "unknown" if last is None else ("passing" if last.ok else "failing"),
                    "incident_id": t.state.incident_id,
                    "last_result": None
                    if last is None
                    else dict(last.summary(), at=iso(last.started_at)),
                }
            )
        return out


_LOG_NAMES = {
    "open": "incident.opened",
    "restart": "heal.attempted",
    "dry_run": "heal.dry_run",
    "heal_succeeded": "heal.succeeded",
    "heal_failed": "heal.failed",
    "heal_exhausted": "incident.escalated",
    "resolve": "incident.resolved",
}
