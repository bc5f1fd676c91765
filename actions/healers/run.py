"""Heal by running a command (``heal: {run: [/usr/local/bin/fix-queue, --flush], timeout: 30s}``).

The command is a list, run without a shell, in a process group of its own, with stdin closed; it
heals when it exits with status 0 within ``timeout`` (the engine still waits for the check to pass
before it counts the heal as succeeded). A nonzero status, a signal or the timeout fail the heal;
at the timeout the whole group is killed. What it prints (stdout and stderr together, the first
4 KiB) goes on the incident's timeline as ``heal_output`` and into its evidence, masked.

The target, for the timeline, the budget and the metrics, is the command line as a shell would
quote it (``fix-queue --flush``); the healer splits it back into the exact list written.
"""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

from actions.healers.base import HealClients, Healer, HealOutcome
from actions.healers.process import run_bounded
from agent.durations import format_duration


class RunHealer(Healer):
    """Runs one command, bounded by ``timeout``."""

    kind: ClassVar[str] = "run"
    verb: ClassVar[str] = "run"
    verb_ing: ClassVar[str] = "running"
    deed: ClassVar[str] = "command"
    noun: ClassVar[str] = "command"
    timeout_default: ClassVar[float | None] = 30.0

    def __init__(self, target: str, clients: HealClients, *, timeout: float | None = None) -> None:
        super().__init__(target, clients, timeout=timeout)
        self.argv = shlex.split(target)

    @classmethod
    def target_of(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "expected a list: the command and its arguments, e.g. [/usr/local/bin/fix, --now]"
                " (no shell runs it)"
            )
        if not isinstance(value, list) or not value:
            raise ValueError("expected a list of at least one string: the command and its arguments")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"item {i} is not a string (quote it)")
            if "\0" in item:
                raise ValueError(f"item {i} holds a NUL character")
        if not value[0].strip():
            raise ValueError("the command (item 0) must not be empty")
        return shlex.join(value)

    async def heal(self) -> HealOutcome:
        assert self.timeout is not None
        try:
            done = await run_bounded(self.argv, self.timeout)
        except OSError as exc:
            return HealOutcome(False, f"cannot run {self.argv[0]!r}: {exc.strerror or exc}")
        except Exception as exc:  # never raise into the engine's background task
            return HealOutcome(False, f"{type(exc).__name__}: {exc}")
        if done.timed_out:
            message = f"timed out after {format_duration(self.timeout)}: its process group was killed"
        else:
            message = done.says()
        cut = done.output_bytes if done.output_bytes > len(done.output) else 0
        return HealOutcome(done.returncode == 0 and not done.timed_out, message, done.text, cut)
