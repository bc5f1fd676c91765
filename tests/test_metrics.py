"""``/metrics``: what a real agent run shows, read with Prometheus's own parser, and the tallies behind it.

The end-to-end tests run ``lifeguard run`` as a subprocess against real targets and receivers and
parse its ``/metrics`` with ``prometheus_client.parser``; the values are checked against what
happened in the run. The rest are the pure parts: histograms, families from a snapshot.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import CheckFacts, CheckTally, DeliveryTally, EngineTally, Histogram, Snapshot, families
from tests.fixtures_agent import ROOT, SECRET, Receiver, Target, agent_config, free_port, poll

TOKEN = "metrics-t0ken"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, labels), as Prometheus reads the text."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(port: int, token: str | None = TOKEN) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_metrics_show_what_happened_in_the_run_and_survive_a_restart_as_gauges(spawn_agent) -> None:
    good, bad = Target(), Target()
    bad.status = 500
    refusing = Receiver()
    refusing.status = 400  # a 4xx other than 408/429: the delivery is dead at once
    for server in (good, bad, refusing):
        await server.start()
    unreachable = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: retried, stays pending
    try:
        cfg = agent_config(
            [
                {"name": "web", "type": "http", "url": good.url},
                {"name": "api", "type": "http", "url": bad.url, "severity": "critical"},
            ],
            [
                {"name": "ops", "type": "webhook", "url": refusing.url, "secret": "${HOOK_SECRET}", "timeout": "1s"},
                {"name": "slow", "type": "webhook", "url": unreachable, "timeout": "1s"},
            ],
            api={"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
        )
        agent = spawn_agent(cfg, {"HOOK_SECRET": SECRET})
        await agent.ready()

        status, _, body = await scrape(agent.api_port, token=None)
        assert status == 401 and '"unauthorized"' in body
        status, _, _ = await scrape(agent.api_port, token="wrong")
        assert status == 401

        async def settled() -> Samples:
            return parse((await scrape(agent.api_port))[2])

        m = await poll(
            settled,
            lambda m: (value(m, "lifeguard_deliveries_total", notifier="ops", result="dead") or 0) >= 1
            and (value(m, "lifeguard_outbox_pending", notifier="slow") or 0) >= 1
            and (value(m, "lifeguard_check_runs_total", check="web", result="ok") or 0) >= 3,
            what="a dead delivery to ops, an event pending for slow, and three runs of web",
        )
        status, content_type, _ = await scrape(agent.api_port)
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")

        assert value(m, "lifeguard_build_info", version="0.1.0") == 1
        assert value(m, "lifeguard_check_up", check="web", type="http") == 1
        assert value(m, "lifeguard_check_up", check="api", type="http") == 0
        assert value(m, "lifeguard_check_runs_total", check="web", result="fail") is None
        assert (value(m, "lifeguard_check_runs_total", check="api", result="fail") or 0) >= 1
        assert value(m, "lifeguard_check_runs_total", check="api", result="ok") is None
        runs = value(m, "lifeguard_check_runs_total", check="web", result="ok")
        assert value(m, "lifeguard_check_duration_seconds_count", check="web") == runs
        assert value(m, "lifeguard_check_duration_seconds_bucket", check="web", le="+Inf") == runs
        assert (value(m, "lifeguard_check_schedule_lag_seconds_count") or 0) >= runs
        assert value(m, "lifeguard_incidents_opened_total", severity="critical") == 1
        assert value(m, "lifeguard_incidents_open", severity="critical") == 1
        assert value(m, "lifeguard_incidents_open", severity="high") == 0
        assert value(m, "lifeguard_deliveries_total", notifier="ops", result="delivered") is None
        assert (value(m, "lifeguard_deliveries_total", notifier="slow", result="retry") or 0) >= 1
        assert value(m, "lifeguard_outbox_pending", notifier="ops") == 0
        assert (value(m, "process_resident_memory_bytes") or 0) > 0

        # Counters start again at zero; gauges are right at the very first scrape of the next run.
        agent.signal(15)
        assert await agent.wait() == 0
        bad.status = 200  # were it still failing, the restored incident would be no proof
        good.hang.set()  # no result of this run within a second: whatever `up` says comes from the store
        bad.hang.set()
        again = spawn_agent(dict(cfg, checks=[dict(c, interval="1h") for c in cfg["checks"]]), {"HOOK_SECRET": SECRET})
        await again.ready()
        first = parse((await scrape(again.api_port))[2])
        assert value(first, "lifeguard_incidents_open", severity="critical") == 1
        assert value(first, "lifeguard_incidents_opened_total", severity="critical") is None
        assert value(first, "lifeguard_check_runs_total", check="web", result="ok") is None
        assert (value(first, "lifeguard_outbox_pending", notifier="slow") or 0) >= 1
        assert value(first, "lifeguard_check_up", check="web", type="http") == 1
        assert value(first, "lifeguard_check_up", check="api", type="http") == 0
    finally:
        for server in (good, bad, refusing):
            await server.stop()


def test_the_agent_loads_prometheus_client_only_when_scraped() -> None:
    code = (
        "import sys, agent.daemon, agent.api, agent.engine, agent.scheduler, agent.outbox, agent.metrics;"
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_histogram_buckets_are_cumulative_and_le_is_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert h.total == 3.65


def test_scheduler_tally_counts_runs_and_lag_and_forgets_a_removed_check() -> None:
    tally = CheckTally()
    tally.ran("web", True, 0.01)
    tally.ran("web", False, 2.0)
    tally.late(-0.001)  # a timer that fired early is not late
    assert tally.runs == {("web", True): 1, ("web", False): 1}
    assert tally.lag.counts[0] == 1 and tally.lag.total == 0.0
    tally.forget("web")
    assert tally.runs == {} and tally.durations == {}


def _snapshot(**over: Any) -> Snapshot:
    checks = CheckTally()
    engine, outbox = EngineTally(), DeliveryTally()
    engine.incident_opened("high")
    engine.healed("restart_container", "api", True)
    engine.healed("restart_unit", "web.service", False)
    outbox.recorded("ops", "delivered")
    fields: dict[str, Any] = dict(
        version="9.9.9", checks=[CheckFacts("web", "http", True), CheckFacts("new", "tcp", None)],
        runs=checks.runs, durations=checks.durations, lag=checks.lag, incidents_open={"high": 1, "low": 0},
        incidents_opened=engine.opened, heals=engine.heals,
        heal_budget={("restart_container", "api"): 2, ("restart_unit", "web.service"): 1},
        deliveries=outbox.outcomes, pending={"ops": 0}, reloads={"ok": 2},
    )
    fields.update(over)
    return Snapshot(**fields)


def test_families_name_every_metric_as_documented() -> None:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    class One:
        def collect(self) -> Any:
            return families(_snapshot())

    registry = CollectorRegistry()
    registry.register(One())  # type: ignore[arg-type]
    m = parse(generate_latest(registry).decode())
    assert value(m, "lifeguard_build_info", version="9.9.9") == 1
    assert value(m, "lifeguard_check_up", check="web", type="http") == 1
    assert not any(name == "lifeguard_check_up" and ("check", "new") in labels for name, labels in m)
    assert value(m, "lifeguard_heal_restarts_total", container="api", result="succeeded") == 1
    assert value(m, "lifeguard_heals_total", kind="restart_unit", target="web.service", result="failed") == 1
    assert not any(name == "lifeguard_heal_restarts_total" and ("container", "web.service") in labels for name, labels in m)
    assert value(m, "lifeguard_heal_budget_remaining", container="api") == 2
    assert value(m, "lifeguard_incidents_opened_total", severity="high") == 1
    assert value(m, "lifeguard_deliveries_total", notifier="ops", result="delivered") == 1
    assert value(m, "lifeguard_config_reloads_total", result="ok") == 2
    assert value(m, "lifeguard_check_schedule_lag_seconds_count") == 0


def test_the_text_is_what_prometheus_client_makes_of_the_families_byte_for_byte() -> None:
    """``text_chunks`` writes the format itself (no sample objects); it must not drift from
    ``generate_latest`` over ``families``: escaping, Go's float spelling, label order, empty families."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from agent.metrics import CHUNK, text_chunks

    tally = CheckTally()
    names = [f"check-{i:04d}" for i in range(600)] + ['odd"name\\with\nbreaks', "é-ünïcode"]
    for i, name in enumerate(names):
        for run in range(i % 7):
            tally.ran(name, run % 3 != 0, (i * 0.0137 + run) % 12.0)
        tally.late((i % 11) * 0.01)
    tally.runs[("many", True)] = 1_234_567  # Go writes 1.234567e+06
    tally.runs[("more", False)] = 10**17
    checks = [CheckFacts(n, "http", (None, True, False)[i % 3], i % 5 == 0) for i, n in enumerate(names)]
    for snap in (_snapshot(checks=checks, runs=tally.runs, durations=tally.durations, lag=tally.lag), _snapshot(),
                 _snapshot(checks=[], runs={}, durations={}, heals={}, heal_budget={}, deliveries={}, pending={})):

        class One:
            def collect(self) -> Any:
                return families(snap)  # noqa: B023

        registry = CollectorRegistry()
        registry.register(One())  # type: ignore[arg-type]
        chunks = list(text_chunks(snap))
        assert "".join(chunks) == generate_latest(registry).decode()
        assert all(len(c) < 2 * CHUNK for c in chunks)
    big = list(text_chunks(_snapshot(checks=checks, runs=tally.runs, durations=tally.durations)))
    assert len(big) > 1 and len(big) >= sum(map(len, big)) // CHUNK  # in slices, never the whole text at once


async def test_a_scrape_is_written_in_slices_with_the_loop_free_between_them() -> None:
    from agent.metrics import Exposition

    tally = CheckTally()
    for i in range(3000):
        tally.ran(f"check-{i}", True, 0.01)
    exposition = Exposition(lambda: _snapshot(runs=tally.runs, durations=tally.durations))
    slices: list[bytes] = []
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def out(chunk: bytes) -> None:
        slices.append(chunk)

    task = asyncio.create_task(ticker())
    await exposition.write(out)
    task.cancel()
    text = b"".join(slices).decode()
    m = parse(text)
    assert value(m, "lifeguard_check_runs_total", check="check-2999", result="ok") == 1
    assert (value(m, "process_resident_memory_bytes") or 0) > 0
    assert len(slices) > 10 and turns >= len(slices) - 2


async def test_record_reload_counts_into_the_next_scrape() -> None:
    from agent.metrics import Exposition, record_reload, reloads

    before = reloads().get("failed", 0)
    record_reload("failed")
    exposition = Exposition(lambda: _snapshot(reloads=reloads()))
    m = parse((await exposition.render()).decode())
    assert value(m, "lifeguard_config_reloads_total", result="failed") == before + 1
    assert (value(m, "process_resident_memory_bytes") or 0) > 0


def test_the_grafana_dashboard_uses_only_metrics_the_agent_serves() -> None:
    import json
    import re

    served = {family.name for family in families(_snapshot())}
    dashboard = json.loads((ROOT / "examples" / "grafana" / "lifeguard.json").read_text())
    used = {
        re.sub(r"_(bucket|total|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\blifeguard_\w+", target["expr"])
    }
    assert used and used <= served, used - served
    shown = {"lifeguard_check_up", "lifeguard_check_duration_seconds", "lifeguard_check_schedule_lag_seconds",
             "lifeguard_incidents_open", "lifeguard_deliveries", "lifeguard_outbox_pending"}
    assert shown <= used


async def test_a_scraper_that_leaves_mid_answer_frees_the_exposition_for_the_next() -> None:
    """A scrape of thousands of checks is streamed: a scraper that gives up half way (its timeout)
    must not leave the next scrape waiting, nor the API answering it with an error."""
    from structlog.testing import capture_logs

    from agent.api import ApiRunner, create_app
    from agent.metrics import Exposition

    tally = CheckTally()
    for i in range(3000):
        tally.ran(f"check-{i}", True, 0.01)
    exposition = Exposition(lambda: _snapshot(runs=tally.runs, durations=tally.durations))
    unused: Any = None  # /metrics reads nothing else
    app = create_app(agent_name="t", token=TOKEN, health=unused, board=unused, incidents=unused,
                     deliveries=unused, metrics=exposition.write)
    runner = ApiRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    from aiohttp import web

    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with capture_logs() as logs:
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
                await reader.readexactly(10_000)  # of ~3.4 MB
                writer.transport.abort()  # gone: a reset, not a polite close
            status, content_type, text = await asyncio.wait_for(scrape(port), 10)
        assert [e["event"] for e in logs] == ["api.metrics_abandoned"] * 3  # no api.failed with a traceback
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        m = parse(text)
        assert value(m, "lifeguard_check_runs_total", check="check-2999", result="ok") == 1
    finally:
        await runner.cleanup()
