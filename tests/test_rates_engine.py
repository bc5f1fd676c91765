"""Error rates, flapping and baselines through the engine: a real SQLite file, a real aiohttp target
on 127.0.0.1 probed by the real http check, an injected clock for the times results start at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from actions.healers import HEALERS, Healer, HealOutcome
from agent.engine import Engine
from agent.evidence import EvidenceCollector
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.http import HttpCheckConfig
from tests.fixtures_agent import Target


class Scripted(Target):
    """A target that answers the statuses it is given, one per request, then the last one."""

    def __init__(self) -> None:
        super().__init__()
        self.plan: list[int] = []

    async def _health(self, request: web.Request) -> web.Response:
        self.hits += 1
        status = self.plan.pop(0) if len(self.plan) > 1 else self.plan[0] if self.plan else 200
        return web.Response(status=status, text="ok" if status < 400 else "down")


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    t = Scripted()
    await t.start()
    yield t
    await t.stop()


class SwitchHealer(Healer):
    """A heal kind of the test's own that counts its calls."""

    kind = "flip_switch"
    verb, verb_ing, noun = "flip", "flipping", "switch"
    calls: list[str] = []

    async def heal(self) -> HealOutcome:
        SwitchHealer.calls.append(self.target)
        return HealOutcome(True, f"flipped {self.target}")


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> type[SwitchHealer]:
    monkeypatch.setitem(HEALERS, SwitchHealer.kind, SwitchHealer)
    monkeypatch.setattr(SwitchHealer, "calls", [])
    return SwitchHealer


class Run:
    """An engine over a real store with one http check against ``target``; results start 1 s apart."""

    def __init__(self, store: Store, tmp_path: Path, target: Target, **check: Any) -> None:
        self.now = 10_000.0
        self.context = CheckContext()
        given = {"open_after": "0s", "resolve_after": 2, "notify": ["ops"]} | check
        cfg = HttpCheckConfig.model_validate(dict(name="api", type="http", url=target.url, **given))
        self.check = build_check(cfg, self.context)
        self.engine = Engine(store, [self.check], clients=self.context, evidence=EvidenceCollector(None, tmp_path),
                             notify_all=["ops"], clock=lambda: self.now)
        self.context.baseline = self.engine.baselines.median
        self.store = store

    async def step(self, n: int = 1) -> list[CheckResult]:
        results = []
        for _ in range(n):
            self.now += 1
            result = await self.check.run(clock=lambda: self.now)
            await self.engine.on_result(result)
            await self.engine.drain(5)  # the heal and the evidence it spawned
            results.append(result)
        return results

    async def close(self) -> None:
        await self.engine.drain(5)
        await self.context.close()

    async def incidents(self) -> list[dict[str, Any]]:
        found = []
        for summary in await self.store.run(self.store.incidents.list, None, 100):
            incident = await self.store.run(self.store.incidents.get, summary["id"])
            assert incident is not None
            found.append(incident)
        return found


async def test_an_error_rate_incident_opens_when_the_share_crosses_and_the_windows_survive_a_restart(
    running_store: Store, tmp_path: Path, scripted: Scripted
) -> None:
    # A result a second, error_rate > 20% over 10s: the third failure among ten opens.
    scripted.plan = [200] * 7 + [500, 200, 500, 200]
    first = Run(running_store, tmp_path, scripted, open_when="error_rate > 20% over 10s")
    await first.engine.restore()
    await first.step(11)  # 2 failing of the last 10: not above 20%
    assert await first.incidents() == []
    await first.engine.flush_results()
    await first.close()

    scripted.plan = [500]
    second = Run(running_store, tmp_path, scripted, open_when="error_rate > 20% over 10s")
    second.now = first.now
    await second.engine.restore()  # the window goes on from the stored results
    [result] = await second.step()
    assert not result.ok
    [incident] = await second.incidents()
    assert incident["status"] == "open" and incident["title"] == "api failing: HTTP 500"
    assert incident["timeline"][0]["message"] == "error rate 30% (error_rate > 20% over 10s): HTTP 500"
    assert incident["flapping"] is False
    await second.close()


async def test_an_alternating_target_keeps_one_incident_marked_flapping_with_one_update_and_no_heal(
    running_store: Store, tmp_path: Path, scripted: Scripted, switch: type[SwitchHealer]
) -> None:
    scripted.plan = [500, 200] * 15
    run = Run(running_store, tmp_path, scripted, resolve_after=1,
              heal={"flip_switch": "main", "max_restarts": 100, "within": "1h", "cooldown": "0s"})
    await run.engine.restore()
    await run.step(10)  # before flapping: the storm of open / resolve the rules alone would make
    healed_before = len(switch.calls)
    assert healed_before == 5
    storm = await run.incidents()
    assert len(storm) == 5 and [i["status"] for i in storm].count("open") == 1
    flapping = next(i for i in storm if i["status"] == "open")
    assert flapping["flapping"] is True
    await run.step(20)  # still alternating
    assert len(switch.calls) == healed_before  # no heal while flapping
    assert len(await run.incidents()) == 5  # no open / resolve storm any more
    events = await running_store.run(running_store.events.of_incident, flapping["id"])
    updates = [e for e in events if e.kind == "incident.updated"]
    assert len(updates) == 1 and updates[0].fields == {"changes": ["flapping"]}
    assert updates[0].incident["flapping"] is True

    scripted.plan = [200]
    await run.step(20)  # settles: stops flapping, then resolves by resolve_after
    incident = await running_store.run(running_store.incidents.get, flapping["id"])
    assert incident is not None and incident["status"] == "resolved" and incident["flapping"] is False
    assert [t["kind"] for t in incident["timeline"]][-2:] == ["flapping_stopped", "resolved"]
    events = await running_store.run(running_store.events.of_incident, flapping["id"])
    assert [e.kind for e in events].count("incident.updated") == 2
    assert events[-1].kind == "incident.resolved"
    await run.close()


async def test_a_flapping_check_with_no_incident_opens_one_marked_flapping(
    running_store: Store, tmp_path: Path, scripted: Scripted
) -> None:
    scripted.plan = [500, 200] * 10
    run = Run(running_store, tmp_path, scripted, open_after="1h")
    await run.engine.restore()
    await run.step(20)
    [incident] = await run.incidents()
    assert incident["flapping"] is True and incident["title"] == "api flapping"
    assert incident["timeline"][0]["message"].startswith("flapping: 50.2% of the last 20 results changed state")
    events = await running_store.run(running_store.events.of_incident, incident["id"])
    assert [e.kind for e in events] == ["incident.opened"]
    await run.close()


async def test_the_baseline_survives_a_restart(tmp_path: Path, scripted: Scripted) -> None:
    store = Store(tmp_path / "lifeguard.db")
    await store.run(store.open)
    run = Run(store, tmp_path, scripted, baseline={"window": "1h", "min_samples": 30})
    await run.engine.restore()
    results = await run.step(29)
    assert run.context.baseline("api") is None  # below min_samples
    results += await run.step(1)
    before = run.context.baseline("api")
    assert before is not None and all(r.ok for r in results)
    lowest, highest = min(r.latency for r in results), max(r.latency for r in results)
    assert lowest / 1.02 <= before <= highest * 1.02
    await run.engine.flush_results()
    await run.close()
    await store.aclose()

    reopened = Store(tmp_path / "lifeguard.db")
    await reopened.run(reopened.open)
    again = Run(reopened, tmp_path, scripted, baseline={"window": "1h", "min_samples": 30})
    again.now = run.now
    assert again.context.baseline("api") is None  # nothing until restored
    await again.engine.restore()
    assert again.context.baseline("api") == before
    again.now += 3600 + 120
    assert again.context.baseline("api") is None  # the hour is over
    await again.close()
    await reopened.aclose()


async def test_a_reload_keeps_the_windows_and_old_baseline_minutes_are_pruned(
    running_store: Store, tmp_path: Path, scripted: Scripted
) -> None:
    scripted.plan = [200, 200, 200, 500]
    run = Run(running_store, tmp_path, scripted, open_when="error_rate > 50% over 1m",
              baseline={"window": "1h", "min_samples": 3})
    await run.engine.restore()
    await run.step(4)  # 1 failing of 4
    assert await run.incidents() == []
    changed = HttpCheckConfig.model_validate(dict(name="api", type="http", url=scripted.url, open_after="0s", resolve_after=2,
                              notify=["ops"], open_when="error_rate > 20% over 1m",
                              baseline={"window": "1h", "min_samples": 3}))
    await run.engine.replace_check(build_check(changed, run.context))
    run.check = run.engine.tracked["api"].check
    assert run.context.baseline("api") is not None  # the minutes stay
    scripted.plan = [500]
    await run.step()  # 2 of 5 = 40% > 20%: the reloaded rule with the results from before
    [incident] = await run.incidents()
    assert incident["timeline"][0]["message"] == "error rate 40% (error_rate > 20% over 1m): HTTP 500"

    await run.engine.flush_results(final=True)
    assert await running_store.run(running_store.baselines.since, 0) != []
    counts = await running_store.run(lambda: running_store.prune(
        run.now + 86400 + 120, results_per_check=1000, delivered_events=1.0, resolved_evidence=1.0))
    assert counts["results"] == 0
    assert await running_store.run(running_store.baselines.since, 0) == []
    await run.close()
