"""Heal a systemd unit of a host install by restarting it (``heal: {restart_service: nginx}``).

The agent runs ``systemctl --no-ask-password restart UNIT``, found on ``PATH`` when the heal is
made, without ``--no-block``: systemctl waits for the restart job, so its exit status says whether
the unit came back up (bounded by ``timeout``; at the timeout systemctl is killed, the job goes on
in systemd). A unit written without a type is a ``.service``, as systemctl reads it. The agent
needs the right to restart the unit (root, or a polkit rule for its user).
"""

from __future__ import annotations

import re
import shutil
from typing import Any, ClassVar

from actions.healers.base import Healer, HealOutcome
from actions.healers.process import run_bounded
from agent.durations import format_duration

UNIT_TYPES = ("service", "socket", "target", "timer", "path", "mount", "automount", "swap", "slice", "scope")
# systemd's unit name characters; a leading '-' would read as an option.
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]*")
_MAX_UNIT_NAME = 255
_SAID = 300  # characters of systemctl's output quoted in a failure's message


def unit_name(value: str) -> str:
    """The unit as systemd names it: ``nginx`` is ``nginx.service``. ``ValueError`` when it is no
    unit name."""
    name = value.strip()
    if not _UNIT_NAME.fullmatch(name) or name.startswith(".") or name.endswith("."):
        raise ValueError(f"not a systemd unit name: {value[:80]!r} (e.g. nginx or nginx.service)")
    if name.rpartition(".")[2] not in UNIT_TYPES:
        name += ".service"
    if len(name) > _MAX_UNIT_NAME:
        raise ValueError(f"a unit name has at most {_MAX_UNIT_NAME} characters")
    if name.startswith("@") or "@." in name:
        raise ValueError(f"{name!r} is a template, not a unit: name an instance (e.g. getty@tty1.service)")
    return name


class RestartServiceHealer(Healer):
    """Restarts a systemd unit with systemctl, bounded by ``timeout``."""

    kind: ClassVar[str] = "restart_service"
    verb: ClassVar[str] = "restart"
    verb_ing: ClassVar[str] = "restarting"
    noun: ClassVar[str] = "unit"
    timeout_default: ClassVar[float | None] = 30.0

    @classmethod
    def target_of(cls, value: Any) -> Any:
        return unit_name(value) if isinstance(value, str) and value.strip() else value

    async def heal(self) -> HealOutcome:
        assert self.timeout is not None
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            return HealOutcome(False, "systemctl not found on PATH (restart_service needs a host run by systemd)")
        try:
            done = await run_bounded([systemctl, "--no-ask-password", "restart", self.target], self.timeout)
        except OSError as exc:
            return HealOutcome(False, f"cannot run {systemctl}: {exc.strerror or exc}")
        except Exception as exc:  # never raise into the engine's background task
            return HealOutcome(False, f"{type(exc).__name__}: {exc}")
        if done.timed_out:
            return HealOutcome(False, f"systemctl did not finish within {format_duration(self.timeout)}")
        if done.returncode != 0:
            said = " ".join(done.text.split())
            said = said if len(said) <= _SAID else said[:_SAID] + "…"
            return HealOutcome(False, f"systemctl {done.says()}" + (f": {said}" if said else ""))
        return HealOutcome(True, f"restarted unit {self.target!r}")
