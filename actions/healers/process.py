"""Run a command for a heal: no shell, bounded in time, its output captured up to a limit.

The command runs in a session (and so a process group) of its own, with stdin closed and
stdout and stderr in one pipe. When the time is up the whole group gets SIGTERM, then SIGKILL
``KILL_GRACE`` seconds later, so nothing it started outlives a timed-out heal; a command that
exits in time may leave a process running (a daemon it started), which is not touched. The
output is read as it comes (a chatty command never blocks on a full pipe) and only its first
bytes are kept. Everything here is asyncio: the event loop never waits on the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL to the process group of a command that timed out."""

AFTER_EXIT = 1.0
"""Seconds the output is still read once the command has exited (a process it left running may
hold the pipe open: its output is not waited for)."""

KEEP = 8192
"""Bytes of output kept: more than a heal shows, so that masking a secret cut at the limit still
finds it."""


@dataclass(frozen=True, slots=True)
class Finished:
    """How a command ended."""

    returncode: int | None  # negative: killed by that signal; None: it outlived even SIGKILL's wait
    output: bytes  # the first ``KEEP`` bytes of stdout and stderr, interleaved as written
    output_bytes: int  # all it wrote, kept or not
    timed_out: bool

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def says(self) -> str:
        """How it ended, in words: ``exited with status 2``, ``killed by SIGKILL``."""
        if self.returncode is None:
            return "did not end"
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"killed by {name}"
        return f"exited with status {self.returncode}"


class _Capture(asyncio.SubprocessProtocol):
    def __init__(self, keep: int) -> None:
        loop = asyncio.get_running_loop()
        self.keep = keep
        self.kept = bytearray()
        self.total = 0
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()  # exited and every pipe closed

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        self.total += len(data)
        room = self.keep - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def run_bounded(argv: Sequence[str], timeout: float, *, keep: int = KEEP) -> Finished:
    """Run ``argv`` (no shell) for at most ``timeout`` seconds. Raises ``OSError`` when it cannot
    be started (no such file, not executable); a cancelled run kills the group at once."""
    loop = asyncio.get_running_loop()
    transport, capture = await loop.subprocess_exec(
        lambda: _Capture(keep),
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pgid = transport.get_pid()  # a new session: its leader's pid is the group's id
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(capture.exited), timeout)
        except TimeoutError:
            timed_out = True
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(capture.exited), KILL_GRACE)
            _signal_group(pgid, signal.SIGKILL)  # whatever of the group is left, leader or not
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(capture.exited), KILL_GRACE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(capture.closed), AFTER_EXIT)
    except asyncio.CancelledError:
        _signal_group(pgid, signal.SIGKILL)
        raise
    finally:
        transport.close()  # our end of the pipe; kills the leader only if it still runs
    return Finished(transport.get_returncode(), bytes(capture.kept), capture.total, timed_out)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
