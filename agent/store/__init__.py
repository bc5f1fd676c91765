"""The agent's memory: one SQLite file in WAL mode under ``state_dir``, one repository per table.

``Store`` owns the connection, its one thread and the migrations; the repositories
(``results``, ``incidents``, ``evidence``, ``heals``, ``events``, ``outbox``) own their SQL.
Every incident change and the events it causes are written in ONE transaction (``apply``),
before anything slow happens, so a crash between the two is impossible. The schema grows by
numbered migration files (``migrations/NNNN_name.sql``, ``PRAGMA user_version``).

sqlite3 blocks, so the daemon calls every method through ``run()``, which executes it on the
store's single thread; that thread is also the only one that touches the connection, which
serializes writes without locks. Tests may call the methods directly.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from agent.store.changes import Change, new_id
from agent.store.events import EventsRepo
from agent.store.evidence import EvidenceRepo
from agent.store.heals import HealsRepo
from agent.store.incidents import IncidentsRepo
from agent.store.outbox import OutboxItem, OutboxRepo
from agent.store.results import ResultRow, ResultsRepo

__all__ = ["Change", "OutboxItem", "ResultRow", "Store", "migrations", "new_id"]

T = TypeVar("T")

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"  # shipped as package data
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


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

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        self._db = db
        self._migrate()

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
            self.incidents.append_timeline(change.incident_id, change.at, change.timeline)
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
                )
                self.outbox.enqueue(event.id, change.incident_id, sequence, change.notifiers, change.at)
            return snapshot

    # -- retention -------------------------------------------------------------------------
    def prune(
        self, now: float, *, results_per_check: int, delivered_events: float, resolved_evidence: float
    ) -> dict[str, int]:
        with self.transaction():
            counts = {
                "results": self.results.prune(results_per_check),
                "events": self.outbox.prune_delivered(now - delivered_events),
                "evidence": self.evidence.prune_resolved(now - resolved_evidence),
            }
            self.events.prune_undeliverable(now - delivered_events)
        return counts
