"""``depends_on`` across the checks of a file: names no check has, and cycles.

A pure function of the raw ``checks:`` section (each check's own model reports the list's type);
the engine's side, holding dependants back, is ``agent.dependencies``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.config.model import Loc

__all__ = ["dependency_errors"]


def dependency_errors(raw_checks: Sequence[Any]) -> list[tuple[Loc, str]]:
    """Located errors of the ``depends_on`` lists of the raw ``checks:`` section: names no check
    has, and cycles (a check that depends on itself, directly or through others)."""
    names = [c["name"] for c in raw_checks if isinstance(c, Mapping) and isinstance(c.get("name"), str)]
    graph: dict[str, list[str]] = {}
    where: dict[str, int] = {}
    errors: list[tuple[Loc, str]] = []
    for i, raw in enumerate(raw_checks):
        if not isinstance(raw, Mapping):
            continue
        wanted = raw.get("depends_on")
        if not isinstance(wanted, list):
            continue  # absent, or the model reports its type
        name = raw.get("name")
        for j, dep in enumerate(wanted):
            if not isinstance(dep, str) or dep in names:
                continue
            from difflib import get_close_matches  # only when there is a mistake to hint at

            close = get_close_matches(dep, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append((("checks", i, "depends_on", j), f"no check named {dep!r}{hint}"))
        if isinstance(name, str) and name not in graph:
            graph[name] = [d for d in wanted if isinstance(d, str) and d in names]
            where[name] = i
    reported: set[str] = set()
    for name in graph:
        cycle = _cycle_from(name, graph)
        if cycle is None or reported & set(cycle):
            continue
        reported.update(cycle)
        errors.append((("checks", where[name], "depends_on"), "a cycle: " + " → ".join([*cycle, cycle[0]])))
    return errors


def _cycle_from(start: str, graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The shortest cycle through ``start``, as the path from it back to it (without the
    repeat), or None."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in graph.get(node, ()):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    return None
