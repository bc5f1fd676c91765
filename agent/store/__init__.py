"""The agent's memory: one SQLite file in WAL mode under ``state_dir``, one repository per table.

``Store`` owns the connection, its one thread and the migrations; the repositories
(``results`` with its roll-ups, ``incidents``, ``evidence``, ``heals``, ``events``, ``outbox``,
``silences``, ``baselines``) own their SQL.
Every incident change and the events it causes are written in ONE transaction (``apply``),
before anything slow happens, so a crash between the two is impossible. The schema grows by
numbered migration files (``migrations/NNNN_name.sql``, ``PRAGMA user_version``).

sqlite3 blocks, so the daemon calls every method through ``run()``, which executes it on the
store's single thread; that thread is also the only one that touches the connection, which
serializes writes without locks. Tests may call the methods directly.

The state is private: ``state_dir`` is created 0700 and the database (with its ``-wal`` and
``-shm``) 0600. ``open`` proves the file is usable — a SQLite database, intact, writable, not
held by another process — or raises ``StoreUnusable`` naming the file, what is wrong and what to
do; a corrupt file is never replaced silently (``move_aside`` is the operator's explicit choice).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from agent.store.baselines import BaselinesRepo
from agent.store.changes import Change, new_id
from agent.store.events import EventsRepo
from agent.store.evidence import EvidenceRepo
from agent.store.heals import HealsRepo
from agent.store.incidents import IncidentsRepo
from agent.store.outbox import OutboxItem, OutboxRepo
from agent.store.reports import ReportsRepo
from agent.store.results import ResultRow, ResultsRepo
from agent.store.silences import SilencesRepo

__all__ = ["Change", "OutboxItem", "ResultRow", "Store", "StoreUnusable", "migrations", "new_id"]

T = TypeVar("T")

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"  # shipped as package data
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
START_LOCK_WAIT = 3.0
"""Seconds ``open`` waits for another process's write lock before calling the file locked."""
_SIDE_FILES = ("-wal", "-shm")
SILENCES_KEPT = 7 * 86400.0
"""Seconds an ended silence stays in the database (the API lists it as expired for a day)."""
BASELINES_KEPT = 86400.0
"""Seconds of latency minutes kept: the longest ``baseline.window``."""
MINUTE_ROLLUPS_KEPT = 2 * 86400.0
"""Seconds the per-minute roll-ups of check results are kept (``retention.minute_rollups``)."""
DAY_ROLLUPS_KEPT = 400 * 86400.0
"""Seconds the per-day roll-ups of check results are kept (``retention.day_rollups``)."""


def default_postmortem_rule(severity: str, opened_at: float, end: float) -> bool:
    """The shipped policies' rule: a critical incident, or one open longer than 4 hours."""
    from agent.config.policies import DEFAULT_POLICIES, DEFAULT_POSTMORTEM_AFTER, SeverityPolicy, postmortem_required

    policy = DEFAULT_POLICIES.get(severity, SeverityPolicy())
    return postmortem_required(policy, opened_at, end, DEFAULT_POSTMORTEM_AFTER)


class StoreUnusable(Exception):
    """The database cannot be used: ``str()`` is one line naming the file, the cause and the fix."""

    def __init__(self, path: Path, problem: str, fix: str, *, corrupt: bool = False) -> None:
        super().__init__(f"{path}: {problem}; {fix}")
        self.path = path
        self.corrupt = corrupt


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration shipped in the package, in order."""
    found = []
    for entry in _MIGRATIONS.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found


class Store:
    """The SQLite file, its thread, its migrations and its repositories."""

    def __init__(self, path: Path, agent_info: dict[str, str] | None = None, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout  # how long a write waits for another process's lock
        self.agent_info = agent_info or {"name": "lifeguard", "version": "0"}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifeguard-store")
        self._db: sqlite3.Connection | None = None
        self.results = ResultsRepo(self)
        self.incidents = IncidentsRepo(self)
        self.evidence = EvidenceRepo(self)
        self.heals = HealsRepo(self)
        self.events = EventsRepo(self)
        self.outbox = OutboxRepo(self)
        self.silences = SilencesRepo(self)
        self.baselines = BaselinesRepo(self)
        self.reports = ReportsRepo(self)
        self.postmortem_rule: Callable[[str, float, float], bool] = default_postmortem_rule
        """Whether an incident (severity, opened_at, resolved_at or now) requires a postmortem; the
        daemon sets it from the config's policies. Used for incidents the engine has not judged yet."""

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Open (creating if need be) and migrate the database; ``StoreUnusable`` if it cannot be used."""
        self._make_private_files()
        # Another process's lock is waited for at most START_LOCK_WAIT here; busy_timeout once open.
        wait = min(self.busy_timeout, START_LOCK_WAIT)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=wait)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._db = db
            self._migrate()
            self._prove_writable()
        except sqlite3.Error as exc:
            self._db = None
            db.close()
            raise self._unusable(exc) from None
        self._tighten_modes()

    def move_aside(self, now: float | None = None) -> Path:
        """Rename the database (and its -wal/-shm) to ``lifeguard.db.corrupt-<UTC time>``; the new name."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        self.path.rename(aside)
        for suffix in _SIDE_FILES:  # kept beside it under names SQLite pairs with the moved file
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        return aside

    def _make_private_files(self) -> None:
        """``state_dir`` 0700 and the database file 0600 when they are created here."""
        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except FileExistsError:
            raise StoreUnusable(
                folder, "exists and is not a directory", "point agent.state_dir at a directory or remove the file"
            ) from None
        except NotADirectoryError:
            raise StoreUnusable(
                folder, "a part of this path is a file, not a directory", "point agent.state_dir at a directory"
            ) from None
        except IsADirectoryError:
            raise StoreUnusable(self.path, "is a directory", "remove or rename it") from None
        except OSError as exc:
            where = self.path if self.path.exists() else folder
            raise StoreUnusable(
                where,
                f"cannot be written ({exc.strerror or exc})",
                f"give the agent's user write access to {folder} (or point agent.state_dir elsewhere)",
            ) from None

    def _prove_writable(self) -> None:
        """Take the write lock once: a locked or read-only database fails the open, not a later write."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("ROLLBACK")
        self.db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")

    def _tighten_modes(self) -> None:
        """The database and its side files readable by the agent's user only."""
        for path in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDE_FILES)):
            try:
                if stat.S_IMODE(path.stat().st_mode) & 0o077:
                    path.chmod(0o600)
            except OSError:  # absent, or not ours to change: SQLite made it from the database's mode
                continue

    def _unusable(self, exc: sqlite3.Error) -> StoreUnusable:
        text = str(exc)
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StoreUnusable(
                self.path,
                f"not a usable SQLite database ({text})",
                "restore it from a backup, or start with --move-corrupt-db to move it aside and begin anew",
                corrupt=True,
            )
        if "locked" in text or "busy" in text:
            return StoreUnusable(
                self.path,
                f"locked by another process ({text})",
                "stop the other process using it (another lifeguard with the same state_dir?) and start again",
            )
        if "readonly" in text or "read-only" in text or "unable to open" in text or "disk I/O" in text:
            return StoreUnusable(
                self.path,
                f"cannot be written ({text})",
                f"give the agent's user write access to {self.path.parent} and its files",
            )
        return StoreUnusable(self.path, f"cannot be opened ({text})", "check the file and its directory")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method on the store's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aclose(self) -> None:
        await self.run(self.close)
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version()
        for number, _name, script in migrations()[version:]:
            # Foreign keys off while a migration rebuilds a table; executescript commits first.
            self.db.execute("PRAGMA foreign_keys=OFF")
            try:
                self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            finally:
                self.db.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- the one unit of work for incidents -------------------------------------------------
    def apply(self, change: Change) -> dict[str, Any]:
        """Write one incident change and its events, atomically. Returns the incident as it now is."""
        with self.transaction():
            if change.create is not None:
                self.incidents.create(change.incident_id, change.create)
            self.incidents.update(change.incident_id, change.update, change.state)
            self.incidents.append_timeline(change.incident_id, change.at, change.timeline, change.author)
            if change.comment is not None:
                self.incidents.add_comment(change.incident_id, change.at, *change.comment)
            if change.status_update is not None:
                self.incidents.add_update(change.incident_id, change.at, *change.status_update)
            if change.heal_attempt is not None:
                kind, target = change.heal_attempt
                self.heals.record(kind, target, change.at, change.incident_id)
            snapshot = self.incidents.snapshot(change.incident_id)
            for kind, reason in change.events:
                sequence = self.incidents.take_sequence(change.incident_id)
                event = self.events.append(
                    kind=kind,
                    incident=snapshot,
                    sequence=sequence,
                    at=change.at,
                    agent=self.agent_info,
                    reason=reason,
                    fields=change.event_fields.get(kind),
                )
                notifiers = change.notifiers_for.get(kind, change.notifiers)
                self.outbox.enqueue(event.id, change.incident_id, sequence, notifiers, change.at)
            return snapshot

    # -- retention -------------------------------------------------------------------------
    def trim_results(self, names: Sequence[str], keep_per_check: int) -> int:
        """Raw results beyond the newest ``keep_per_check`` of these checks, removed in one short
        transaction (the daemon trims every minute, a chunk of checks at a time, so the store's one
        thread is never held for long and the raw table never grows past an hour's worth)."""
        with self.transaction():
            return self.results.trim(names, keep_per_check)

    def prune(
        self,
        now: float,
        *,
        results_per_check: int,
        delivered_events: float,
        resolved_evidence: float,
        minute_rollups: float = MINUTE_ROLLUPS_KEPT,
        day_rollups: float = DAY_ROLLUPS_KEPT,
    ) -> dict[str, int]:
        with self.transaction():
            minutes, days = self.results.prune_rollups(now - minute_rollups, now - day_rollups)
            counts = {
                "results": self.results.prune(results_per_check),
                "result_minutes": minutes,
                "result_days": days,
                "events": self.outbox.prune_delivered(now - delivered_events),
                "evidence": self.evidence.prune_resolved(now - resolved_evidence),
            }
            self.events.prune_undeliverable(now - delivered_events)
            self.silences.prune(now - SILENCES_KEPT)
            self.baselines.prune(int((now - BASELINES_KEPT) // 60))
        return counts
