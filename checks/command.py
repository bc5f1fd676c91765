"""The ``command`` check: runs a program the Nagios plugin way and judges it by its exit code.

Exit 0 passes, 1 passes with a warning, 2 fails (critical), anything else — or no exit within
the timeout — fails as unknown. The message is the first line of output up to ``|``; the
performance data after ``|`` goes into ``details["perfdata"]`` (``checks.perfdata``).

Never through a shell: ``command`` is the argument vector itself. The program runs in a session
(and process group) of its own, so that on a timeout — and once it has exited, for whatever it
left behind — one ``killpg`` ends it and every child it started; a child that starts a session
of its own escapes that, as it would escape any supervisor but a cgroup. Output is read as it
comes, the first ``OUTPUT_LIMIT`` bytes kept and the rest drained and dropped, so a chatty
program never blocks on a full pipe and never fills the agent's memory. The values of ``env``
may be secrets: they are masked in everything the check reports and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from agent.config import CheckConfigBase
from agent.config.model import After, KeyedError, field
from agent.config.types import NonEmptyStr, Secret, absolute, base_dir
from agent.redact import value_masker
from checks.base import Check, CheckContext, Outcome
from checks.perfdata import parse_perfdata, split_output

OUTPUT_LIMIT = 64 * 1024
"""Bytes of standard output read and kept; more is read and dropped."""
ERROR_LIMIT = 4 * 1024
"""Bytes of standard error kept (shown when standard output says nothing)."""
CLEANUP_LIMIT = 5.0
"""Seconds given to a killed process group to be reaped and its pipes to close."""
MESSAGE_LIMIT = 500
"""Characters of the first line kept as the message."""

STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def _program_given(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must name the program to run (a list: program, then its arguments)")
    if any("\0" in part for part in value):
        raise ValueError("contains a NUL character")
    return value


def _variable_names(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        # The value is never quoted: it is often a credential.
        if not name or "=" in name or "\0" in name:
            raise KeyedError(name, "invalid variable name (no '=', not empty)")
        if "\0" in text:
            raise KeyedError(name, "the value contains a NUL character (not shown)")
    return value


def _folder(value: Path | None) -> Path | None:
    if value is None:
        return None
    path = absolute(value, base_dir())
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder" if path.exists() else f"{path} does not exist")
    return path


class CommandCheckConfig(CheckConfigBase):
    """Run a program; its exit code is the verdict (Nagios plugin convention)."""

    type: Literal["command"]
    command: Annotated[list[NonEmptyStr], After(_program_given)]
    env: Annotated[dict[str, str], After(_variable_names), Secret] = field(default_factory=dict)
    cwd: Annotated[Path | None, After(_folder)] = None


class CommandCheck(Check[CommandCheckConfig]):
    """Runs ``config.command`` and reads its exit code, first line and performance data."""

    type: ClassVar[str] = "command"
    config_model = CommandCheckConfig
    needs = frozenset()

    def __init__(self, config: CommandCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        self._target = shlex.join(config.command)
        self._mask = value_masker(v for v in config.env.values() if v)

    @property
    def target(self) -> str:
        return self._target

    async def probe(self) -> Outcome:
        argv = list(self.config.command)
        env = {**os.environ, **self.config.env}  # added to the agent's environment
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.config.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return Outcome(False, f"cannot run {argv[0]!r}: {reason}", {"state": "UNKNOWN"})
        out, err = _Capture(OUTPUT_LIMIT), _Capture(ERROR_LIMIT)
        assert proc.stdout is not None and proc.stderr is not None
        finished = False
        try:
            await asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr))
            code = await proc.wait()
            finished = True
        finally:
            _kill_group(proc.pid)  # on a timeout, the whole group; after an exit, what it left behind
            if not finished:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr), proc.wait()), CLEANUP_LIMIT
                    )
        return self._judge(code, out, err)

    def _judge(self, code: int, out: _Capture, err: _Capture) -> Outcome:
        output = self._said(out.text())
        message, perf_text = split_output(output)
        if not message:
            message = next((line.strip() for line in self._said(err.text()).splitlines() if line.strip()), "")
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 1] + "…"
        state = STATES.get(code, "UNKNOWN")
        details: dict[str, Any] = {"exit_code": code, "state": state, "perfdata": parse_perfdata(perf_text)}
        if out.dropped:
            details["output_truncated"] = True
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            message = f"killed by {name}" + (f": {message}" if message else "")
        elif code not in STATES:
            message = f"exit code {code}" + (f": {message}" if message else "")
        elif not message:
            message = f"{state} (exit code {code})"
        return Outcome(code in (0, 1), message, details, warning=code == 1)

    def _said(self, text: str) -> str:
        return self._mask(text)


class _Capture:
    """The first ``limit`` bytes of a stream; the rest read and dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = False

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room:
                self.dropped = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone (or the id now belongs to someone else's)
