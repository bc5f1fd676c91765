"""Wiring and lifecycle of ``lifeguard run``: the agent's parts under one supervisor.

Start, in order: open the store → start connecting to Docker (in the background: a Docker engine
that never answers holds up nothing; container checks fail with "Docker unreachable" until it
answers) → restore open incidents → serve the API → start the outbox → (heals and evidence) →
upkeep (results flush every second, the outbox's figures for ``/health`` every 2 s, pruning hourly)
→ the scheduler. Stop is the reverse, each step bounded: stop scheduling → let heals and evidence
under way finish (5 s) → give in-flight deliveries 5 s (the rest stay pending in SQLite) → close
the API → flush results → close the clients → close the database.

Signal handlers are installed before anything slow and only ask for a stop, so a SIGTERM during
the start ends it early and exits 0 like any other stop. A second
SIGTERM/SIGINT exits at once with code 1 (``daemon.forced_exit``): everything already committed
is kept, as after SIGKILL. A background task that crashes stops the agent in the same order and
makes it exit 1, so systemd's ``Restart=on-failure`` brings it back. A start refused for a reason
restarting cannot cure exits with its own code, named in one line (``StartRefused``): 3 the
database or ``state_dir`` is unusable (corrupt, unwritable, locked by another process), 4 the API
cannot listen on its address; the unit's ``RestartPreventExitStatus=`` does not loop on them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from agent import __version__, plugins
from agent.lifecycle import StartRefused, Supervisor
from agent.store import Store, StoreUnusable

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from agent.api import OutboxFigures, RetryAnswer
    from agent.config import Config
    from agent.dockerclient import DockerEngine
    from agent.engine import Engine
    from agent.evidence import EvidenceCollector
    from agent.metrics import Snapshot
    from agent.outbox import Outbox
    from agent.scheduler import Scheduler
    from checks.base import CheckContext

log = structlog.get_logger("lifeguard.daemon")

SHUTDOWN_GRACE = 5.0  # heals and evidence under way; in-flight deliveries
API_GRACE = 2.0  # requests being answered when the API closes (all are short reads)
QUICK_GRACE = 2.0  # cancelling loops, closing clients, the last flush, closing the database
FLUSH_EVERY = 1.0
FIGURES_EVERY = 2.0  # the outbox's figures /health shows are read this often
STORE_SLOW = 5.0  # a read the store keeps waiting longer makes /health say degraded
PRUNE_EVERY = 3600.0
EXIT_OK, EXIT_FAILED = 0, 1
EXIT_STORAGE, EXIT_ADDRESS = 3, 4  # a refused start (2, a bad config, is the command line's)


async def _nothing(*_: Any) -> None:
    return None


@dataclass(eq=False)
class _Part:
    """A component made of two callables; ``step`` is what the shutdown log calls its stop."""

    name: str
    on_start: Callable[[], Awaitable[None]]
    on_stop: Callable[[float], Awaitable[None]]
    step: str | None = None

    async def start(self) -> None:
        await self.on_start()

    async def stop(self, grace: float) -> None:
        if self.step:
            log.info("daemon.shutdown", step=self.step, grace_s=grace)
        await self.on_stop(grace)


# -- what the API is given -----------------------------------------------------------------------
class _StoreReader:
    """``api.IncidentReader`` over the store, each read on the store's thread; and the outbox's
    figures for ``/health``, read by upkeep into memory so that ``/health`` never waits for the
    store, with how long the store has kept that read waiting (a lock held elsewhere, a write
    ahead of it in its busy wait)."""

    def __init__(self, store: Store) -> None:
        from agent.api import OutboxFigures

        self.store = store
        self.figures = OutboxFigures()
        self.read_error: str | None = None
        self._asked_at: float | None = None  # monotonic, while a refresh waits for the store

    async def list_incidents(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        return await self.store.run(self.store.incidents.list, status, limit)

    async def incident(self, incident_id: str) -> dict[str, Any] | None:
        return await self.store.run(self.store.incidents.get, incident_id)

    async def evidence(self, incident_id: str) -> dict[str, Any]:
        return await self.store.run(self.store.evidence.get, incident_id)

    async def refresh_outbox(self) -> None:
        from agent.api import OutboxFigures

        now = time.time()
        self._asked_at = time.monotonic()
        try:
            stats = await self.store.run(self.store.outbox.stats, now)
        except Exception as exc:
            if self.read_error is None:
                log.warning("store.read_failed", what="outbox figures", error=str(exc))
            self.read_error = str(exc)
            return
        finally:
            self._asked_at = None
        self.read_error = None
        age = stats["oldest_pending_age"]
        self.figures = OutboxFigures(
            stats["pending"], stats["dead"], None if age is None else now - age, stats["pending_by_notifier"]
        )

    def unanswered_for(self) -> float:
        """Seconds the store has kept the current refresh waiting (0 when none is out)."""
        return 0.0 if self._asked_at is None else time.monotonic() - self._asked_at


class _DeliveryDesk:
    """``api.DeliveryDesk`` over the store; a delivery put back in the queue wakes the outbox."""

    def __init__(self, store: Store, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    async def list_deliveries(self, status: str | None, notifier: str | None, limit: int) -> list[dict[str, Any]]:
        return await self.store.run(self.store.outbox.list, status, notifier, limit)

    async def retry_delivery(self, delivery_id: int) -> RetryAnswer:
        from agent.api import RetryAnswer

        def revive() -> RetryAnswer:  # one store call: read, decide and write without a gap
            row = self.store.outbox.get(delivery_id)
            if row is None or row["status"] != "dead":
                return RetryAnswer(row, None if row is None else f"delivery {delivery_id} is {row['status']}, not dead")
            if row["notifier"] not in self.outbox.notifiers:
                return RetryAnswer(row, f"notifier {row['notifier']!r} is no longer in the config")
            self.store.outbox.revive(delivery_id, time.time())
            return RetryAnswer(self.store.outbox.get(delivery_id))

        answer = await self.store.run(revive)
        if answer.delivery is not None and answer.refused is None:
            self.outbox.wake()
        return answer


class _Health:
    """``api.HealthFacts`` of this process, all from memory."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def uptime(self) -> float:
        return time.monotonic() - self.daemon.started

    def checks_running(self) -> int:
        return self.daemon.scheduler.running

    def outbox(self) -> OutboxFigures:
        return self.daemon.reader.figures

    def problems(self) -> list[str]:
        found = []
        docker = self.daemon.docker
        if docker is not None and docker.reachable is False:
            found.append(f"docker unreachable: {docker.last_error}")
        found.extend(self.daemon.engine.problems())
        reader = self.daemon.reader
        waited = reader.unanswered_for()
        if waited > STORE_SLOW:
            found.append(f"database has not answered for {waited:.0f}s")
        if reader.read_error:
            found.append(f"database reads failing: {reader.read_error}")
        return found


def _release_startup_memory() -> None:
    """Hand back to the OS what loading the config and starting left free (pydantic's schema
    building, the YAML tree): collected, then trimmed from glibc's heap. Worth ~1 MB of idle RSS."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols: glibc's, where it is glibc
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass


class Daemon:
    def __init__(self, config: Config, *, heal: bool | None = None, move_corrupt_db: bool = False) -> None:
        self.config = config
        self.move_corrupt_db = move_corrupt_db
        self.refused: StartRefused | None = None  # why the start was refused, for the command line
        self.heal_enabled = config.agent.heal if heal is None else heal
        self.started = time.monotonic()
        self.supervisor = Supervisor()
        self.docker: DockerEngine | None = None
        self.store = Store(
            config.agent.state_dir / "lifeguard.db",
            agent_info={"name": config.agent.name, "version": __version__},
        )
        self.events_pending: int | None = None  # read when the database closes
        self._stop_signals = 0
        self._runner: web.AppRunner | None = None
        self._upkeep: list[asyncio.Task[None]] = []
        self._docker_connect: asyncio.Task[None] | None = None

    def evidence_url(self, incident_id: str) -> str:
        api = self.config.agent.api
        base = (api.public_url or f"http://{api.listen}").rstrip("/")
        return f"{base}/api/incidents/{incident_id}/evidence"

    # -- signals -----------------------------------------------------------------------------
    def request_stop(self, signame: str) -> None:
        """SIGTERM/SIGINT: the first asks for an orderly stop, a second exits at once."""
        self._stop_signals += 1
        if self._stop_signals > 1:
            log.warning("daemon.forced_exit", signal=signame, exit_code=EXIT_FAILED)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FAILED)
        log.info("daemon.stopping", signal=signame)
        self.supervisor.request_stop(f"signal {signame}")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        # SIGHUP's default action would kill the agent; live reload is not built yet.
        loop.add_signal_handler(
            signal.SIGHUP,
            lambda: log.warning("daemon.reload_unsupported", hint="restart the agent to apply a new config"),
        )

    # -- run -----------------------------------------------------------------------------------
    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or a crash), stop; the process's exit code."""
        self._install_signal_handlers()  # before anything slow: a stop during start is a stop
        failed = False
        try:
            self._wire()
            started = await self.supervisor.start()
        except StartRefused as exc:
            failed, started = True, False
            self.refused = exc
            log.error("daemon.start_failed", error=str(exc), exit_code=exc.exit_code)
        except Exception as exc:
            failed = True
            started = False
            log.error("daemon.start_failed", error=str(exc), exc_info=self.supervisor.failure is None)
        if started:
            _release_startup_memory()
            cfg = self.config
            log.info(
                "daemon.started",
                version=__version__,
                config=cfg.summary(),
                heal="on" if self.heal_enabled else "dry-run",
                api=f"http://{cfg.agent.api.listen}",
            )
            await self.supervisor.wait()
        await self.supervisor.stop()
        failed = failed or self.supervisor.failure is not None
        log.info(
            "daemon.stopped",
            events_pending=self.events_pending,
            reason=self.supervisor.failure or self.supervisor.stop_reason,
        )
        if self.refused is not None:
            return self.refused.exit_code
        return EXIT_FAILED if failed else EXIT_OK

    def _wire(self) -> None:
        """Build every part (cheap, no I/O) and hand them to the supervisor in start order."""
        from actions.notifiers import build_notifier
        from agent.engine import Engine
        from agent.evidence import EvidenceCollector
        from agent.outbox import DeliveryPolicy, Outbox
        from agent.routing import NotifierFilter
        from agent.scheduler import Scheduler
        from checks import CheckContext, build_check

        cfg = self.config
        if "docker" in plugins.needs(cfg):
            from agent.dockerclient import DockerEngine

            self.docker = DockerEngine(cfg.docker.url, timeout=cfg.docker.timeout)
        self.context: CheckContext = CheckContext(docker=self.docker)
        checks = [build_check(c, self.context) for c in cfg.checks]
        self.evidence: EvidenceCollector = EvidenceCollector(self.docker, cfg.agent.state_dir)
        self.engine: Engine = Engine(
            self.store,
            checks,
            heal_enabled=self.heal_enabled,
            clients=self.context,
            evidence=self.evidence,
            notify_all=[n.name for n in cfg.notifiers],
            on_events=lambda: self.outbox.wake(),
            secrets=plugins.secret_values(cfg),
            notifier_filters={n.name: NotifierFilter.of(n.events, n.min_severity) for n in cfg.notifiers},
        )
        notifiers = {n.name: build_notifier(n, lambda: self.context.http) for n in cfg.notifiers}
        self.outbox: Outbox = Outbox(
            self.store,
            notifiers,
            evidence_url=self.evidence_url,
            evidence_ready=self.engine.evidence_ready,
            evidence_public=cfg.agent.api.public_url is not None,
            policy=DeliveryPolicy(
                retry_initial=cfg.agent.delivery.retry_initial,
                retry_max=cfg.agent.delivery.retry_max,
                evidence_wait=cfg.agent.delivery.evidence_wait,
            ),
        )
        self.scheduler: Scheduler = Scheduler(
            checks, self.engine.on_result, max_concurrent=cfg.agent.max_concurrent_checks
        )
        self.reader = _StoreReader(self.store)

        add = self.supervisor.add
        add(_Part("store", self._open_store, self._close_store, "close database"), QUICK_GRACE)
        add(_Part("clients", self._connect_docker, self._close_clients, "close clients"), QUICK_GRACE)
        add(_Part("engine", self._restore, self._flush, "flush results"), QUICK_GRACE)
        add(_Part("api", self._start_api, self._stop_api, "close API"), API_GRACE)
        add(_Part("outbox", self._start_outbox, self.outbox.stop, "in-flight deliveries"), SHUTDOWN_GRACE)
        add(_Part("heals", _nothing, self._drain, "finish heals and evidence"), SHUTDOWN_GRACE)
        add(_Part("upkeep", self._start_upkeep, self._stop_upkeep), QUICK_GRACE)
        add(_Part("scheduler", self._start_scheduler, self._stop_scheduler, "stop scheduling"), QUICK_GRACE)

    # -- the parts' starts and stops -----------------------------------------------------------
    async def _open_store(self) -> None:
        try:
            try:
                await self.store.run(self.store.open)
            except StoreUnusable as exc:
                if not (exc.corrupt and self.move_corrupt_db):
                    raise
                aside = await self.store.run(self.store.move_aside)
                log.warning("store.moved_aside", path=str(self.store.path), moved_to=str(aside), reason=str(exc))
                await self.store.run(self.store.open)
        except StoreUnusable as exc:
            await self.store.aclose()
            raise StartRefused(f"database unusable: {exc}", EXIT_STORAGE) from None
        except BaseException:
            await self.store.aclose()
            raise

    async def _close_store(self, _grace: float) -> None:
        stats = await self.store.run(self.store.outbox.stats, time.time())
        self.events_pending = stats["pending"]
        await self.store.aclose()

    async def _connect_docker(self) -> None:
        """Start connecting to Docker and go on at once: nothing else waits for the engine."""
        if self.docker is not None:
            self._docker_connect = self.supervisor.spawn("docker:connect", self._ping_docker(self.docker))

    async def _ping_docker(self, docker: DockerEngine) -> None:
        from agent.dockerclient import DockerError

        url = self.config.docker.url
        try:
            reachable = await docker.ping()
        except DockerError as exc:  # it answered, with an error: container calls will say more
            log.warning("docker.error", url=url, error=str(exc))
            return
        if reachable:
            log.info("docker.connected", url=url)
        else:
            log.warning("docker.unreachable", url=url, error=docker.last_error)

    async def _close_clients(self, _grace: float) -> None:
        if self._docker_connect is not None:
            self._docker_connect.cancel()
            await asyncio.gather(self._docker_connect, return_exceptions=True)
        await self.context.close()
        if self.docker is not None:
            await self.docker.close()

    async def _restore(self) -> None:
        await self.engine.restore()
        retired = await self.store.run(self.store.outbox.retire_unknown_notifiers, list(self.outbox.notifiers))
        if retired:
            log.warning("outbox.retired", events=retired, reason="notifier removed from the config")

    async def _flush(self, _grace: float) -> None:
        await self.engine.flush_results()

    async def _start_api(self) -> None:
        from aiohttp import web

        from agent.api import ApiRunner, create_app
        from agent.metrics import Exposition

        api = self.config.agent.api
        await self.reader.refresh_outbox()  # the first /health shows real figures
        app = create_app(
            agent_name=self.config.agent.name,
            token=api.token,
            health=_Health(self),
            board=self.engine,
            incidents=self.reader,
            deliveries=_DeliveryDesk(self.store, self.outbox),
            metrics=Exposition(self._metrics_snapshot).render,
        )
        runner = ApiRunner(app, access_log=None, shutdown_timeout=API_GRACE)
        await runner.setup()
        try:
            await web.TCPSite(runner, api.host, api.port).start()
        except OSError as exc:
            await runner.cleanup()
            fix = (
                "stop what listens there (another lifeguard?) or change agent.api.listen"
                if exc.errno == errno.EADDRINUSE
                else "change agent.api.listen"
            )
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise StartRefused(f"API cannot listen on {api.listen}: {reason}; {fix}", EXIT_ADDRESS) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    def _metrics_snapshot(self) -> Snapshot:
        """What ``/metrics`` shows, copied from the parts' memory (never the store): on the loop, cheap."""
        from agent.incidents import SEVERITIES
        from agent.metrics import CheckFacts, Snapshot, reloads

        tally = self.scheduler.tally
        pending = dict.fromkeys(self.outbox.notifiers, 0)
        pending.update(self.reader.figures.pending_by_notifier)
        return Snapshot(
            version=__version__,
            checks=[CheckFacts(v.name, v.type, v.last.ok if v.last else None) for v in self.engine.check_views()],
            runs=dict(tally.runs),
            durations={name: hist.copy() for name, hist in tally.durations.items()},
            lag=tally.lag.copy(),
            incidents_open=dict(dict.fromkeys(SEVERITIES, 0), **self.engine.incidents_open()),
            incidents_opened=dict(self.engine.tally.opened),
            heals=dict(self.engine.tally.heals),
            heal_budget=self.engine.heal_budget_left(),
            deliveries=dict(self.outbox.tally.outcomes),
            pending=pending,
            reloads=reloads(),
        )

    async def _stop_api(self, _grace: float) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _start_outbox(self) -> None:
        self.outbox.start(self.supervisor.spawn)

    async def _drain(self, grace: float) -> None:
        await self.engine.drain(grace)
        self.evidence.close()

    async def _start_upkeep(self) -> None:
        spawn = self.supervisor.spawn
        self._upkeep = [
            spawn("upkeep:flush", self._every(FLUSH_EVERY, self.engine.flush_results)),
            spawn("upkeep:prune", self._every(PRUNE_EVERY, self._prune, first=0.0)),
            spawn("upkeep:figures", self._every(FIGURES_EVERY, self.reader.refresh_outbox)),
        ]

    async def _stop_upkeep(self, _grace: float) -> None:
        for task in self._upkeep:
            task.cancel()
        await asyncio.gather(*self._upkeep, return_exceptions=True)

    async def _start_scheduler(self) -> None:
        self.scheduler.start(self.supervisor.spawn)

    async def _stop_scheduler(self, _grace: float) -> None:
        await self.scheduler.stop()

    # -- upkeep ----------------------------------------------------------------------------------
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
