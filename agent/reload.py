"""Live reload: what changed between two configs, and what a reload came to.

SIGHUP, ``lifeguard reload`` and ``POST /api/reload`` all end in ``Daemon.reconfigure``; this
module holds the parts of it that need no running agent, so they are tested without one: which
checks and notifiers were added, changed, removed or left as they were (a check or notifier is
"changed" when any key of its resolved definition differs: its own keys, inherited defaults,
the notifiers its routes give it), which keys only a restart applies (``agent.api.listen``,
``agent.state_dir``: the old values are kept and the log and ``last_reload`` say so), and the
``ReloadResult`` that ``/health`` shows as ``last_reload``.

The pid file (``state_dir/lifeguard.pid``) is how ``lifeguard reload`` finds the running agent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.timefmt import iso

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import Config

PID_FILE = "lifeguard.pid"

__all__ = [
    "PID_FILE",
    "Diff",
    "ReloadResult",
    "diff",
    "keep_restart_only",
    "read_pid",
    "record_reload",
    "remove_pid",
    "write_pid",
]


def record_reload(result: Literal["ok", "failed"]) -> None:
    """Count one reload by its result (``lifeguard_config_reloads_total{result}``)."""
    from agent import metrics

    metrics.record_reload(result)


@dataclass(frozen=True, slots=True)
class Diff:
    """Names of what a reload adds, changes, removes and leaves alone, each in config order."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, list[str]]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed}

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def diff(old: Sequence[Any], new: Sequence[Any], *, changed_too: Sequence[str] = ()) -> Diff:
    """Compare two lists of named definitions (checks or notifiers) by their resolved values;
    ``changed_too`` names ones to count as changed even when equal (a heal switch that flipped)."""
    before = {item.name: item for item in old}
    result = Diff()
    for item in new:
        name = item.name
        if name not in before:
            result.added.append(name)
        elif before[name] != item or type(before[name]) is not type(item) or name in changed_too:
            result.changed.append(name)
        else:
            result.unchanged.append(name)
    names = {item.name for item in new}
    result.removed.extend(name for name in before if name not in names)
    return result


def keep_restart_only(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the keys only a restart applies put back to their running values, and one
    sentence per such key that changed."""
    said = []
    agent = new.agent
    if new.agent.api.listen != old.agent.api.listen:
        said.append(
            f"agent.api.listen changed ({old.agent.api.listen} -> {new.agent.api.listen}):"
            " restart the agent to apply it"
        )
        agent = agent.model_copy(update={"api": agent.api.model_copy(update={"listen": old.agent.api.listen})})
    if new.agent.state_dir != old.agent.state_dir:
        said.append(
            f"agent.state_dir changed ({old.agent.state_dir} -> {new.agent.state_dir}): restart the agent to apply it"
        )
        agent = agent.model_copy(update={"state_dir": old.agent.state_dir})
    if agent is new.agent:
        return new, said
    return new.model_copy(update={"agent": agent}), said


@dataclass(slots=True)
class ReloadResult:
    """What one reload came to, as ``/health``'s ``last_reload`` and ``POST /api/reload`` show it."""

    ok: bool
    at: float = field(default_factory=time.time)
    errors: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    checks: dict[str, list[str]] = field(default_factory=dict)
    notifiers: dict[str, list[str]] = field(default_factory=dict)
    source: str = "signal"  # signal | api | discovery

    def view(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": iso(self.at),
            "source": self.source,
            "errors": list(self.errors),
            "restart_needed": list(self.restart_needed),
            "checks": dict(self.checks),
            "notifiers": dict(self.notifiers),
        }


# -- the pid file ---------------------------------------------------------------------------------
def write_pid(state_dir: Path) -> Path:
    """Write this process's pid to ``state_dir/lifeguard.pid`` (0600, replaced atomically)."""
    path = state_dir / PID_FILE
    tmp = path.with_name(f".{PID_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def remove_pid(state_dir: Path) -> None:
    """Remove the pid file, if it is still this process's."""
    path = state_dir / PID_FILE
    if read_pid(state_dir) == os.getpid():
        path.unlink(missing_ok=True)


def read_pid(state_dir: Path) -> int | None:
    """The pid in ``state_dir/lifeguard.pid`` if that process is alive, else None."""
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's: signalling it will say so
    return pid
