"""Wiring and lifecycle of ``lifeguard run``.

Start: open the store, restore open incidents, start the API, the outbox, then the scheduler.
Stop (SIGTERM/SIGINT; the handler only sets an event), in this order with a bound each:
stop scheduling → let heals and evidence under way finish (5 s) → give in-flight deliveries
5 s (the rest stay pending in SQLite) → stop the API → flush results → close the database.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__, plugins
from agent.outbox import DeliveryPolicy, Outbox
from agent.scheduler import Scheduler
from agent.store import Store

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from agent.config import Config
    from agent.dockerclient import DockerEngine

log = structlog.get_logger("lifeguard.daemon")

SHUTDOWN_GRACE = 5.0
FLUSH_EVERY = 1.0
PRUNE_EVERY = 3600.0


def needs_docker(config: Config) -> bool:
    return "docker" in plugins.needs(config)


def config_secrets(config: Config) -> list[str]:
    """Every value of the config that must never be shown."""
    return plugins.secret_values(config)


class Daemon:
    def __init__(self, config: Config, *, heal: bool | None = None) -> None:
        self.config = config
        self.heal_enabled = config.agent.heal if heal is None else heal
        self.started = time.monotonic()
        self.stopping = asyncio.Event()
        self.docker: DockerEngine | None = None
        self.store = Store(
            config.agent.state_dir / "lifeguard.db",
            agent_info={"name": config.agent.name, "version": __version__},
        )
        self._runner: web.AppRunner | None = None
        self._upkeep: list[asyncio.Task[None]] = []

    def evidence_url(self, incident_id: str) -> str:
        api = self.config.agent.api
        base = (api.public_url or f"http://{api.listen}").rstrip("/")
        return f"{base}/api/incidents/{incident_id}/evidence"

    def request_stop(self, signame: str) -> None:
        log.info("daemon.stopping", signal=signame)
        self.stopping.set()

    async def run(self) -> int:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        # SIGHUP's default action would kill the agent; live reload is not built yet.
        loop.add_signal_handler(
            signal.SIGHUP,
            lambda: log.warning("daemon.reload_unsupported", hint="restart the agent to apply a new config"),
        )
        try:
            await self.stopping.wait()
        finally:
            await self.stop()
        return 0

    async def start(self) -> None:
        from actions.notifiers import build_notifier
        from agent.engine import Engine
        from agent.evidence import EvidenceCollector
        from checks import CheckContext, build_check

        cfg = self.config
        cfg.agent.state_dir.mkdir(parents=True, exist_ok=True)
        await self.store.run(self.store.open)
        if needs_docker(cfg):
            from agent.dockerclient import DockerEngine

            self.docker = DockerEngine(cfg.docker.url, timeout=cfg.docker.timeout)
            if not await self.docker.ping():
                log.warning("docker.unreachable", url=cfg.docker.url, error=self.docker.last_error)
        self.context = CheckContext(docker=self.docker)
        checks = [build_check(c, self.context) for c in cfg.checks]
        secrets = config_secrets(cfg)
        self.engine = Engine(
            self.store,
            checks,
            heal_enabled=self.heal_enabled,
            clients=self.context,
            evidence=EvidenceCollector(self.docker, cfg.agent.state_dir),
            notify_all=[n.name for n in cfg.notifiers],
            on_events=lambda: self.outbox.wake(),
            secrets=secrets,
        )
        notifiers = {n.name: build_notifier(n, lambda: self.context.http) for n in cfg.notifiers}
        self.outbox = Outbox(
            self.store,
            notifiers,
            evidence_url=self.evidence_url,
            evidence_ready=self.engine.evidence_ready,
            policy=DeliveryPolicy(
                retry_initial=cfg.agent.delivery.retry_initial,
                retry_max=cfg.agent.delivery.retry_max,
                evidence_wait=cfg.agent.delivery.evidence_wait,
            ),
        )
        await self.engine.restore()
        retired = await self.store.run(self.store.outbox.retire_unknown_notifiers, list(notifiers))
        if retired:
            log.warning("outbox.retired", events=retired, reason="notifier removed from the config")
        await self._start_api()
        self.outbox.start()
        self.scheduler = Scheduler(
            checks, self.engine.on_result, max_concurrent=cfg.agent.max_concurrent_checks
        )
        self.scheduler.start()
        self._upkeep = [
            asyncio.create_task(self._every(FLUSH_EVERY, self.engine.flush_results)),
            asyncio.create_task(self._every(PRUNE_EVERY, self._prune, first=0.0)),
        ]
        log.info(
            "daemon.started",
            version=__version__,
            config=cfg.summary(),
            heal="on" if self.heal_enabled else "dry-run",
            api=f"http://{cfg.agent.api.listen}",
        )

    async def _start_api(self) -> None:
        from aiohttp import web

        from agent.api import create_app

        api = self.config.agent.api
        self._runner = web.AppRunner(create_app(self), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, api.host, api.port).start()

    async def _every(self, period: float, fn: Any, first: float | None = None) -> None:
        await asyncio.sleep(period if first is None else first)
        while True:
            try:
                await fn()
            except Exception:
                log.exception("upkeep.failed", task=getattr(fn, "__name__", str(fn)))
            await asyncio.sleep(period)

    async def _prune(self) -> None:
        r = self.config.agent.retention
        counts = await self.store.run(
            lambda: self.store.prune(
                time.time(),
                results_per_check=r.results_per_check,
                delivered_events=r.delivered_events,
                resolved_evidence=r.resolved_evidence,
            )
        )
        if any(counts.values()):
            log.info("store.pruned", **counts)

    async def stop(self) -> None:
        log.info("daemon.shutdown", step="stop scheduling")
        await self.scheduler.stop()
        for task in self._upkeep:
            task.cancel()
        await asyncio.gather(*self._upkeep, return_exceptions=True)
        log.info("daemon.shutdown", step="finish heals and evidence", grace_s=SHUTDOWN_GRACE)
        await self.engine.drain(SHUTDOWN_GRACE)
        log.info("daemon.shutdown", step="in-flight deliveries", grace_s=SHUTDOWN_GRACE)
        await self.outbox.stop(SHUTDOWN_GRACE)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.context.close()
        if self.docker is not None:
            await self.docker.close()
        stats = await self.store.run(self.store.outbox.stats, time.time())
        await self.store.aclose()
        log.info("daemon.stopped", events_pending=stats["pending"])
