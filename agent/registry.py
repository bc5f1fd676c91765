"""A registry of plugin classes that imports each one only when it is asked for.

Eleven notifier types cost over a megabyte of idle memory if all of them are imported at start,
while a host uses two or three. Entries are written as ``"module:Class"`` and resolved on first
lookup; ``keys()`` (names for error messages, ``type:`` validation) never imports anything. A class
given directly (a test registering its own type) is used as is.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(MutableMapping[str, T], Generic[T]):
    def __init__(self, entries: dict[str, str | T]) -> None:
        self._entries: dict[str, str | T] = dict(entries)

    def __getitem__(self, name: str) -> T:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            resolved: T = getattr(importlib.import_module(module), attr)
            self._entries[name] = resolved
            return resolved
        return entry

    def __setitem__(self, name: str, value: T) -> None:
        self._entries[name] = value

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"LazyRegistry({list(self._entries)})"
