"""Wiring and lifecycle of ``lifeguard run``: the agent's parts under one supervisor.

Start, in order: open the store → start connecting to Docker (in the background: a Docker engine
that never answers holds up nothing; container checks fail with "Docker unreachable" until it
answers) → restore open incidents → write the postmortem drafts still missing → serve the API → start
the outbox → (heals and evidence) →
upkeep (results flush every second, the outbox's figures for ``/health`` every 2 s, pruning hourly)
→ the scheduler → Docker's events (when a check watches a container: they run its checks at
once; ``agent.docker_events``). Stop is the reverse, each step bounded: stop scheduling → let heals
and evidence under way finish (5 s) → give in-flight deliveries 5 s (the rest stay pending in SQLite) →
close the API → let postmortem drafts under way finish (2 s; the rest are written at the next start) →
flush results → close the clients → close the database.

Signal handlers are installed before anything slow and only ask for a stop, so a SIGTERM during
the start ends it early and exits 0 like any other stop. A second
SIGTERM/SIGINT exits at once with code 1 (``daemon.forced_exit``): everything already committed
is kept, as after SIGKILL. A background task that crashes stops the agent in the same order and
makes it exit 1, so systemd's ``Restart=on-failure`` brings it back. A start refused for a reason
restarting cannot cure exits with its own code, named in one line (``StartRefused``): 3 the
database or ``state_dir`` is unusable (corrupt, unwritable, locked by another process), 4 the API
cannot listen on its address; the unit's ``RestartPreventExitStatus=`` does not loop on them.

SIGHUP, ``POST /api/reload`` (and so ``lifeguard reload``) re-read the config file and apply it
through ``reconfigure``, one reload at a time; label discovery applies its checks the same way.
The rules of what a reload keeps and restarts are in ``agent.reload`` and the README ("Reload").
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
from agent.reload import ReloadResult, diff, keep_restart_only, record_reload, remove_pid, write_pid
from agent.sdnotify import SystemdNotify, status_line
from agent.store import Store, StoreUnusable

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from agent.api import OutboxFigures, RetryAnswer
    from agent.config import CheckConfigBase, Config
    from agent.discovery import Discovery
    from agent.docker_events import DockerEvents
    from agent.dockerclient import DockerEngine
    from agent.engine import Engine
    from agent.evidence import EvidenceCollector
    from agent.metrics import Snapshot
    from agent.outbox import Outbox
    from agent.policies import PolicyTimer
    from agent.postmortem import PostmortemWriter
    from agent.scheduler import Scheduler
    from checks.base import CheckContext

log = structlog.get_logger("lifeguard.daemon")

SHUTDOWN_GRACE = 5.0  # heals and evidence under way; in-flight deliveries
API_GRACE = 2.0  # requests being answered when the API closes (all are short reads)
QUICK_GRACE = 2.0  # cancelling loops, closing clients, the last flush, closing the database
FLUSH_EVERY = 1.0
MAINTENANCE_EVERY = 5.0  # seconds between looks for maintenance that ended (silences, windows)
FIGURES_EVERY = 2.0  # the outbox's figures /health shows are read this often
STORE_SLOW = 5.0  # a read the store keeps waiting longer makes /health say degraded
PRUNE_EVERY = 3600.0
TRIM_EVERY = 60.0  # raw results beyond retention.results_per_check are removed this often...
TRIM_CHUNK = 100  # ...this many checks per store call, so incident writes never wait long behind it
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


class _StatusPage:
    """``api.StatusSource``: the checks as configured and as they last did, their per-day results
    (the day roll-ups), the incidents and the maintenance windows, read on the store's thread and
    built into the public document."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def status_document(self) -> dict[str, Any] | None:
        from agent import status_page as page

        config = self.daemon.config
        if not config.agent.status_page:
            return None
        now = time.time()
        store = self.daemon.store
        configured = {c.name: c for c in config.checks}
        engine = self.daemon.engine
        checks = []
        for view in engine.check_views():
            cfg = configured.get(view.name)
            service = view.name if cfg is None else page.service_of(view.name, cfg.group, cfg.tags)
            tracked = engine.tracked.get(view.name)
            checks.append(page.CheckState(
                view.name, service, None if view.last is None else view.last.ok,
                tags=tuple(cfg.tags) if cfg is not None else (),
                container=tracked.evidence_container if tracked is not None else None,
            ))
        first_day = (int(now // page.DAY) - page.DAYS + 1) * page.DAY
        days = await store.run(store.results.daily, first_day)
        unresolved, resolved = await store.run(
            store.incidents.for_status_page, now - page.RESOLVED_SHOWN_FOR, page.RESOLVED_SHOWN
        )
        return page.build_status(
            title=config.agent.status_title or f"{config.agent.name} status",
            now=now,
            checks=checks,
            days=days,
            open_incidents=unresolved,
            resolved=resolved,
            windows=engine.windows,
        )


class _Reports:
    """``api.ReportSource``: the incident report over the store's rows, by the running config."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def incident_report(self, since: float, until: float) -> dict[str, Any]:
        from agent.reports import incident_report

        store = self.daemon.store
        incidents, timeline = await store.run(store.reports.history, since, until)
        config = self.daemon.config
        return incident_report(
            incidents, timeline, since=since, until=until, policies=config.policies,
            postmortem_after=config.postmortem_after, targets=config.report.targets,
        )


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


class _Reloads:
    """``api.ReloadDesk``: when the config was loaded, the last reload, and a reload on request."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def config_loaded_at(self) -> float:
        return self.daemon.config_loaded_at

    def last_reload(self) -> dict[str, Any] | None:
        last = self.daemon.last_reload
        return None if last is None else last.view()

    async def reload(self) -> dict[str, Any]:
        return (await self.daemon.reload("api")).view()


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


OPEN_FILES_WANTED = 65536


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files towards the hard one: a check in flight holds a socket,
    and so does each kept-alive connection, so thousands of checks need more than the usual 1,024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("daemon.open_files_limit", soft=soft, hard=hard, error=str(exc))


def _release_startup_memory() -> None:
    """Hand back to the OS what loading the config and starting left free (the config's
    validation, the YAML tree): collected, then trimmed from glibc's heap (worth ~1 MB of idle RSS);
    what is left is frozen out of later collections."""
    import ctypes
    import gc

    gc.collect()
    # Everything alive now (modules, the config and its models, the checks) lives as long as the
    # agent: out of the collector's reach, a full collection scans only what came after, so its
    # pauses of the event loop stay short with thousands of checks.
    gc.freeze()
    # Fewer young collections: with thousands of checks the defaults (700, 10, 10) ran a full
    # collection every few seconds, each stopping the event loop for ~110 ms at 3,000 checks
    # (bench/scale.py --gcwatch); with these and the freeze, none in 30 s, schedule lag p99 205 -> 17 ms.
    gc.set_threshold(10_000, 50, 100)
    try:
        ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols: glibc's, where it is glibc
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass


ReloadingHook = Callable[[], None]
ReloadedHook = Callable[[ReloadResult], None]


class Daemon:
    """The running agent.

    Reload hooks, for the parts that tell others about a reload (the notify protocol): every
    callable in ``on_reloading`` is called as a reload of the config file begins (before it is
    read), every one in ``on_reloaded`` with its ``ReloadResult`` once it is over, applied or
    refused. Reloads by discovery call neither. A hook must not block; one that raises is logged.
    """

    def __init__(
        self,
        config: Config,
        *,
        heal: bool | None = None,
        move_corrupt_db: bool = False,
        relog: Callable[[Config], None] | None = None,
    ) -> None:
        self.config = config  # what runs: the file's config with the discovered checks
        self.file_config = config  # as last read from the file (restart-only keys as running)
        self.config_loaded_at = time.time()
        self.last_reload: ReloadResult | None = None
        self.on_reloading: list[ReloadingHook] = []
        self.on_reloaded: list[ReloadedHook] = []
        self.relog = relog  # logging set up again for a reloaded config (level, secrets to mask)
        self.move_corrupt_db = move_corrupt_db
        self.refused: StartRefused | None = None  # why the start was refused, for the command line
        self._heal_arg = heal
        self.heal_enabled = config.agent.heal if heal is None else heal
        self.discovery: Discovery | None = None
        self.docker_events: DockerEvents | None = None
        self._reload_lock = asyncio.Lock()
        self._serving = False  # every part started: a reload may begin
        self._reload_pending = False  # a SIGHUP came during the start
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
        self.systemd = SystemdNotify(self.status_line, self.supervisor.spawn)  # a no-op outside systemd
        # systemctl reload waits for READY=1 again: RELOADING=1 as a reload begins, READY=1 when it is over.
        self.on_reloading.append(self.systemd.reloading)
        self.on_reloaded.append(lambda _result: self.systemd.ready())

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
        loop.add_signal_handler(signal.SIGHUP, self.request_reload, "SIGHUP")

    def request_reload(self, signame: str) -> None:
        """SIGHUP: re-read the config file and apply it, in an owned task."""
        if self.supervisor.stop_requested:
            log.warning("reload.ignored", signal=signame, reason="the agent is stopping")
            return
        if not self._serving:  # applied once every part has started
            self._reload_pending = True
            log.info("reload.deferred", signal=signame, reason="the agent is still starting")
            return
        log.info("reload.requested", signal=signame)
        self.supervisor.spawn("reload:signal", self.reload("signal"))

    # -- run -----------------------------------------------------------------------------------
    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or a crash), stop; the process's exit code."""
        self._install_signal_handlers()  # before anything slow: a stop during start is a stop
        _raise_open_files_limit()
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
            self._serving = True
            if self._reload_pending:
                self.supervisor.spawn("reload:signal", self.reload("signal"))
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
        from agent.policies import PolicyTimer
        from agent.postmortem import PostmortemWriter
        from agent.routing import NotifierFilter
        from agent.scheduler import Scheduler
        from checks import CheckContext, build_check

        cfg = self.config
        if "docker" in plugins.needs(cfg):
            from agent.dockerclient import DockerEngine

            self.docker = DockerEngine(cfg.docker.url, timeout=cfg.docker.timeout)
        if cfg.docker.discover.enabled:
            from agent.discovery import Discovery

            assert self.docker is not None  # discovery needs Docker (plugins.needs)
            self.discovery = Discovery(
                self.docker, cfg.docker.discover, spawn=self.supervisor.spawn, on_change=self.discovered_changed
            )
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
            on_events=self._events_written,
            secrets=plugins.secret_values(cfg),
            notifier_filters={n.name: NotifierFilter.of(n.events, n.min_severity, n.internal) for n in cfg.notifiers},
            policies=cfg.policies,
            maintenance=[m.window() for m in cfg.maintenance],
            postmortem_after=cfg.postmortem_after,
            on_resolved=lambda incident_id: self.postmortems.resolved(incident_id),
        )
        self.context.baseline = self.engine.baselines.median  # conditions' `latency > 2x baseline`
        self.postmortems: PostmortemWriter = PostmortemWriter(
            self.store, self.engine.record_postmortem, lambda: self.config, evidence_ready=self.engine.evidence_ready
        )
        self._set_postmortem_rule(cfg)
        self.timers: PolicyTimer = PolicyTimer(
            lambda: self.store.run(self.store.incidents.clocks),
            self.engine.fire_policy,
            lambda: self.config.policies,
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
        self.engine.deps.set_docker_defaults(cfg.defaults.severity, cfg.defaults.notify)
        self.engine.deps.docker = self.docker
        self.engine.deps.run_now = self.scheduler.run_now
        if self.docker is not None:
            self.docker_events = self._watch_docker_events(self.docker)
        self.reader = _StoreReader(self.store)

        add = self.supervisor.add
        add(_Part("store", self._open_store, self._close_store, "close database"), QUICK_GRACE)
        add(_Part("pidfile", self._write_pid, self._remove_pid), QUICK_GRACE)
        add(_Part("clients", self._connect_docker, self._close_clients, "close clients"), QUICK_GRACE)
        add(_Part("engine", self._restore, self._flush, "flush results"), QUICK_GRACE)
        add(_Part("postmortems", self.postmortems.catch_up, self.postmortems.drain, "finish postmortem drafts"),
            QUICK_GRACE)
        add(_Part("api", self._start_api, self._stop_api, "close API"), API_GRACE)
        add(_Part("outbox", self._start_outbox, self.outbox.stop, "in-flight deliveries"), SHUTDOWN_GRACE)
        add(_Part("heals", _nothing, self._drain, "finish heals and evidence"), SHUTDOWN_GRACE)
        add(_Part("upkeep", self._start_upkeep, self._stop_upkeep), QUICK_GRACE)
        add(_Part("policies", self._start_timers, self._stop_timers, "stop policy timers"), QUICK_GRACE)
        add(_Part("scheduler", self._start_scheduler, self._stop_scheduler, "stop scheduling"), QUICK_GRACE)
        if self.docker_events is not None:
            add(self.docker_events, QUICK_GRACE)
        if self.discovery is not None:
            add(self.discovery, QUICK_GRACE)
        add(self.systemd)  # last: READY=1 once everything serves; first to stop: STOPPING=1

    def status_line(self) -> str:
        """The one-line summary systemd shows (``STATUS=``), from memory."""
        views = self.engine.check_views()
        failing = sum(v.last is not None and not v.last.ok for v in views)
        incidents = sum(v.incident_id is not None for v in views)
        return status_line(len(views), failing, incidents, self.reader.figures.pending, _Health(self).problems())

    # -- the parts' starts and stops -----------------------------------------------------------
    async def _write_pid(self) -> None:
        """``state_dir/lifeguard.pid``: how ``lifeguard reload`` finds this process."""
        try:
            write_pid(self.config.agent.state_dir)
        except OSError as exc:  # a reload through the API still works
            log.warning("daemon.pid_file_failed", error=str(exc))

    async def _remove_pid(self, _grace: float) -> None:
        try:
            remove_pid(self.config.agent.state_dir)
        except OSError as exc:
            log.warning("daemon.pid_file_failed", error=str(exc))

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

    def _watch_docker_events(self, docker: DockerEngine) -> DockerEvents:
        """Docker's events re-run the checks of the container they are about (and go into evidence)."""
        from agent.docker_events import DockerEvents, watched_containers

        events = DockerEvents(
            docker, lambda: watched_containers(self.engine.tracked), self.scheduler.run_now, self.supervisor.spawn
        )
        self.evidence.docker_events = events.recent
        return events

    def _follow_docker(self) -> None:
        """The Docker engine's own incident follows whether it answers, from now on (after the
        restore, so a restored one is known before the engine's first answer)."""
        if self.docker is None:
            return
        self.docker.on_reachability = self.engine.deps.docker_changed
        if self.docker.reachable is not None:
            self.engine.deps.docker_changed(self.docker.reachable, self.docker.last_error)

    async def _restore(self) -> None:
        await self.engine.restore()
        self._follow_docker()
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
            token=lambda: self.config.agent.api.token,
            health=_Health(self),
            reloads=_Reloads(self),
            board=self.engine,
            incidents=self.reader,
            deliveries=_DeliveryDesk(self.store, self.outbox),
            desk=self.engine,  # the one writer of incidents carries out their commands
            silences=self.engine,
            metrics=Exposition(self._metrics_snapshot).write,
            status=_StatusPage(self),
            reports=_Reports(self),
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
            checks=[
                CheckFacts(name, t.config.type, None if (last := t.last) is None else last.ok,
                           last is not None and last.warning)
                for name, t in self.engine.tracked.items()
            ],
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
            spawn("upkeep:trim", self._every(TRIM_EVERY, self._trim_results)),
            spawn("upkeep:figures", self._every(FIGURES_EVERY, self.reader.refresh_outbox)),
            spawn("upkeep:maintenance", self._every(MAINTENANCE_EVERY, self.engine.release_maintenance)),
        ]

    async def _stop_upkeep(self, _grace: float) -> None:
        for task in self._upkeep:
            task.cancel()
        await asyncio.gather(*self._upkeep, return_exceptions=True)

    def _events_written(self) -> None:
        self.outbox.wake()
        self.timers.wake()  # a new or changed incident may come due sooner than the timer thinks

    async def _start_timers(self) -> None:
        self._timers = self.supervisor.spawn("policies:timers", self.timers.run())

    async def _stop_timers(self, _grace: float) -> None:
        self._timers.cancel()
        await asyncio.gather(self._timers, return_exceptions=True)

    async def _start_scheduler(self) -> None:
        self.scheduler.start(self.supervisor.spawn)

    async def _stop_scheduler(self, _grace: float) -> None:
        await self.scheduler.stop()

    # -- reload ----------------------------------------------------------------------------------
    async def reload(self, source: str = "signal") -> ReloadResult:
        """Re-read the config file and apply it; a config with any error is refused as a whole."""
        from agent.config import ConfigError, load_config

        async with self._reload_lock:
            self._call_hooks(self.on_reloading)
            result: ReloadResult | None = None
            try:
                try:
                    new = await asyncio.to_thread(load_config, self.file_config.path)
                except ConfigError as exc:
                    result = self._refused(exc.errors, source)
                else:
                    result = await self._apply(new, source)
                    self.config_loaded_at = result.at
            except Exception as exc:  # a bug half-way: said, and the agent keeps running
                log.exception("reload.error", source=source)
                result = self._refused([f"{type(exc).__name__}: {exc}"], source)
            finally:
                if result is not None:
                    self._call_hooks(self.on_reloaded, result)
            return result

    async def reconfigure(self, new_config: Config, source: str = "api") -> ReloadResult:
        """Apply ``new_config`` (a config as ``load_config`` returns it) to the running agent."""
        async with self._reload_lock:
            return await self._apply(new_config, source)

    async def discovered_changed(self) -> ReloadResult:
        """Discovery's checks changed: apply them with the config file as it was last read."""
        async with self._reload_lock:
            return await self._apply(self.file_config, "discovery")

    def _refused(self, errors: list[str], source: str) -> ReloadResult:
        for error in errors:
            log.error("reload.invalid", source=source, error=error)
        log.error("reload.refused", source=source, errors=len(errors), hint="the running config is kept")
        result = ReloadResult(ok=False, errors=list(errors), source=source)
        self.last_reload = result
        record_reload("failed")
        return result

    def _call_hooks(self, hooks: list[Any], *args: Any) -> None:
        for hook in hooks:
            try:
                hook(*args)
            except Exception:
                log.exception("reload.hook_failed", hook=getattr(hook, "__qualname__", repr(hook)))

    def _with_discovered(self, file_config: Config) -> Config:
        """The file's config plus the checks discovery found (a check in the file always wins)."""
        if self.discovery is None:
            return file_config
        found: list[CheckConfigBase] = self.discovery.checks_for(file_config)
        if not found:
            return file_config
        return file_config.model_copy(update={"checks": [*file_config.checks, *found]})

    async def _apply(self, new_file: Config, source: str) -> ReloadResult:
        from actions.notifiers import build_notifier
        from agent.outbox import DeliveryPolicy
        from agent.routing import NotifierFilter
        from checks import build_check

        old = self.config
        new_file, restart_needed = keep_restart_only(self.file_config, new_file)
        if (new_file.docker.url, new_file.docker.timeout) != (old.docker.url, old.docker.timeout):
            restart_needed.append("docker.url or docker.timeout changed: restart the agent to apply it")
            kept = new_file.docker.model_copy(update={"url": old.docker.url, "timeout": old.docker.timeout})
            new_file = new_file.model_copy(update={"docker": kept})
        if new_file.docker.discover != old.docker.discover:
            restart_needed.append("docker.discover changed: restart the agent to apply it")
            new_file = new_file.model_copy(
                update={"docker": new_file.docker.model_copy(update={"discover": old.docker.discover})}
            )
        for said in restart_needed:
            log.warning("reload.restart_needed", detail=said)
        new = self._with_discovered(new_file)
        heal_enabled = new.agent.heal if self._heal_arg is None else self._heal_arg
        flipped = [] if heal_enabled == self.heal_enabled else [c.name for c in new.checks if c.heal is not None]
        checks = diff(old.checks, new.checks, changed_too=flipped)
        notifiers = diff(old.notifiers, new.notifiers)
        self._ensure_docker(new)

        # Notifiers first: an incident a removed check resolves goes to the new set.
        running = {
            n.name: (self.outbox.notifiers[n.name] if n.name in notifiers.unchanged else
                     build_notifier(n, lambda: self.context.http))
            for n in new.notifiers
        }
        await self.outbox.reconfigure(running)
        if notifiers.removed:
            retired = await self.store.run(self.store.outbox.retire_unknown_notifiers, list(running))
            if retired:
                log.warning("outbox.retired", events=retired, reason="notifier removed from the config")
        delivery = new.agent.delivery
        self.outbox.policy = DeliveryPolicy(delivery.retry_initial, delivery.retry_max, delivery.evidence_wait)
        self.outbox.evidence_public = new.agent.api.public_url is not None
        self.engine.set_routing(
            [n.name for n in new.notifiers],
            {n.name: NotifierFilter.of(n.events, n.min_severity, n.internal) for n in new.notifiers},
        )
        self.engine.set_secrets(plugins.secret_values(new))
        self.engine.set_policies(new.policies)
        self.engine.postmortem_after = new.postmortem_after
        self._set_postmortem_rule(new)
        self.engine.set_maintenance(m.window() for m in new.maintenance)
        self.engine.deps.set_docker_defaults(new.defaults.severity, new.defaults.notify)
        self.engine.heal_enabled = self.heal_enabled = heal_enabled
        if self.relog is not None:
            self.relog(new)

        for name in checks.removed:
            await self.scheduler.remove(name)
            self.scheduler.tally.forget(name)  # its series leave /metrics with it
            await self.engine.remove_check(name)
        for name in checks.changed:
            await self.scheduler.remove(name)
            check = build_check(new.check(name), self.context)
            await self.engine.replace_check(check)
            self.scheduler.add(check)
        for name in checks.added:
            check = build_check(new.check(name), self.context)
            await self.engine.add_check(check)
            self.scheduler.add(check)
        if new.agent.max_concurrent_checks != old.agent.max_concurrent_checks:
            self.scheduler.limit(new.agent.max_concurrent_checks)
        self.store.agent_info["name"] = new.agent.name

        self.config, self.file_config = new, new_file
        self.timers.wake()
        result = ReloadResult(
            ok=True,
            restart_needed=restart_needed,
            checks=checks.summary(),
            notifiers=notifiers.summary(),
            source=source,
        )
        if source != "discovery":
            self.last_reload = result
        if source != "discovery" or checks:
            log.info(
                "reload.applied",
                source=source,
                checks=checks.summary(),
                notifiers=notifiers.summary(),
                unchanged_checks=len(checks.unchanged),
                restart_needed=restart_needed or None,
                config=new.summary(),
            )
        if source != "discovery":
            record_reload("ok")
        return result

    def _set_postmortem_rule(self, config: Config) -> None:
        """The store judges unresolved incidents' ``postmortem.required`` by the config's policies."""
        from agent.policies import postmortem_required

        policies, after = config.policies, config.postmortem_after
        self.store.postmortem_rule = lambda severity, opened_at, end: postmortem_required(
            policies.of(severity), opened_at, end, after
        )

    def _ensure_docker(self, config: Config) -> None:
        """A reload that adds the first container check (or a check naming a container) connects Docker."""
        if self.docker is not None or "docker" not in plugins.needs(config):
            return
        from agent.dockerclient import DockerEngine

        self.docker = DockerEngine(config.docker.url, timeout=config.docker.timeout)
        self.context.docker = self.docker
        self.evidence.docker = self.docker
        self.engine.deps.docker = self.docker
        self._follow_docker()
        self.docker_events = self._watch_docker_events(self.docker)
        self.supervisor.spawn("docker:events", self.docker_events.run())
        self._docker_connect = self.supervisor.spawn("docker:connect", self._ping_docker(self.docker))

    # -- upkeep ----------------------------------------------------------------------------------
    async def _every(self, period: float, fn: Any, first: float | None = None) -> None:
        await asyncio.sleep(period if first is None else first)
        while True:
            try:
                await fn()
            except Exception:
                log.exception("upkeep.failed", task=getattr(fn, "__name__", str(fn)))
            await asyncio.sleep(period)

    async def _trim_results(self) -> None:
        keep = self.config.agent.retention.results_per_check
        names = list(self.engine.tracked)
        removed = 0
        for i in range(0, len(names), TRIM_CHUNK):
            removed += await self.store.run(self.store.trim_results, names[i : i + TRIM_CHUNK], keep)
        if removed:
            log.debug("store.trimmed", results=removed)

    async def _prune(self) -> None:
        r = self.config.agent.retention
        counts = await self.store.run(
            lambda: self.store.prune(
                time.time(),
                results_per_check=r.results_per_check,
                minute_rollups=r.minute_rollups,
                day_rollups=r.day_rollups,
                delivered_events=r.delivered_events,
                resolved_evidence=r.resolved_evidence,
            )
        )
        if any(counts.values()):
            log.info("store.pruned", **counts)
