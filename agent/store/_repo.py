"""The base of every repository: access to the store's one connection."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from agent.store import Store


class Repo:
    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def db(self) -> sqlite3.Connection:
        return self._store.db
