"""The ``tcp`` check: passes when a TCP connection to ``host:port`` opens (and says the right thing).

With ``expect`` or a condition on ``tcp.banner`` it reads the banner after writing ``send``: at
most ``BANNER_LIMIT`` bytes, until what it waits for has arrived, the peer closes, or the check's
timeout is near, so a failure quotes what was read rather than only "timed out".

``asyncio.open_connection`` on purpose: a leaner ``loop.sock_connect`` on a raw socket was
measured to hang forever on some targets, even after cancellation (RECIPES.md).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import sys
import time
from typing import Any, ClassVar, Literal

from agent.config import CheckConfigBase
from agent.config.types import NonEmptyStr, Port
from agent.neterrors import describe_errno
from checks.base import Check, CheckContext, Outcome
from checks.conditions import Baseline, Observed, Subject, TcpCondition, Verdict, evaluate, failure_message, shown

# With several addresses per host (localhost -> ::1 and 127.0.0.1), asyncio folds differing
# errors into one OSError without an errno; from 3.12 it can hand them all back instead.
_CONNECT_KWARGS: dict[str, Any] = {"all_errors": True} if sys.version_info >= (3, 12) else {}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")
# A host without IPv6 fails ::1 with these; they say nothing about the target.
_NO_SUCH_FAMILY = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})

BANNER_LIMIT = 1024
"""Bytes of the banner read at most; ``expect`` and ``tcp.banner`` see only these."""

READ_MARGIN = 0.25
"""Seconds before the check's timeout (at most a tenth of it) at which reading the banner stops."""


class TcpCheckConfig(CheckConfigBase):
    """Open a TCP connection."""

    type: Literal["tcp"]
    host: NonEmptyStr
    port: Port
    send: str | None = None  # written once connected
    expect: str | None = None  # text the banner (the first BANNER_LIMIT bytes read) must contain
    conditions: list[TcpCondition] = []


class TcpCheck(Check[TcpCheckConfig]):
    """Opens a connection to ``config.host:config.port``; sends ``send``, reads the banner if asked."""

    type: ClassVar[str] = "tcp"
    config_model = TcpCheckConfig
    needs = frozenset()

    def __init__(self, config: TcpCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        host: str = config.host
        self._target = f"[{host}]:{config.port}" if ":" in host else f"{host}:{config.port}"
        self._send: bytes | None = config.send.encode("utf-8") if config.send else None
        self._expect: bytes | None = config.expect.encode("utf-8") if config.expect else None
        self._conditions = list(config.conditions)
        self._banner_conditions = [c for c in self._conditions if c.subject.kind == "tcp.banner"]
        self._reads = self._expect is not None or bool(self._banner_conditions)
        self._wants_baseline = any(isinstance(c.value, Baseline) for c in self._conditions)

    @property
    def target(self) -> str:
        return self._target

    async def probe(self) -> Outcome:
        loop = asyncio.get_running_loop()
        started, t0 = loop.time(), time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(self.config.host, self.config.port, **_CONNECT_KWARGS)
        except OSError as exc:
            return Outcome(False, _describe_connect_error(exc))
        except ExceptionGroup as group:  # only with all_errors=True (Python >= 3.12)
            return Outcome(False, _describe_connect_errnos([getattr(e, "errno", None) for e in group.exceptions]))
        banner: bytes | None = None
        try:
            if self._send is not None:
                writer.write(self._send)
                await writer.drain()
            if self._reads:
                timeout = float(self.config.timeout)
                banner = await self._read_banner(reader, started + timeout - min(READ_MARGIN, timeout / 10))
        except OSError as exc:
            text = exc.strerror or str(exc) or type(exc).__name__
            return Outcome(False, f"connected, then {text[:1].lower()}{text[1:]}")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the connection opened, which is all closing it can tell
        if not self._reads and not self._conditions:
            return Outcome(True, "connected")
        observed = Observed(
            latency=time.monotonic() - t0,
            banner=banner,
            baseline=self.context.baseline(self.name) if self._wants_baseline else None,
        )
        problems: list[str] = []
        if self._expect is not None and banner is not None and self._expect not in banner:
            seen = shown(Subject("tcp.banner"), banner) if banner else "nothing"
            problems.append(f"banner does not contain {self.config.expect!r} (got {seen})")
        for condition in self._conditions:
            verdict: Verdict = evaluate(condition, observed)
            if not verdict.ok:
                problems.append(failure_message(condition, verdict))
        if problems:
            return Outcome(False, "; ".join(problems))
        return Outcome(True, "connected")

    async def _read_banner(self, reader: asyncio.StreamReader, deadline: float) -> bytes:
        """What the peer says first: until ``expect`` and the banner conditions hold, it closes,
        ``BANNER_LIMIT`` bytes have come, or ``deadline`` (loop time) has passed."""
        banner = b""
        try:
            async with asyncio.timeout_at(deadline):
                while len(banner) < BANNER_LIMIT:
                    chunk = await reader.read(BANNER_LIMIT - len(banner))
                    if not chunk:
                        break
                    banner += chunk
                    if self._heard_enough(banner):
                        break
        except TimeoutError:
            pass  # judged on what came in time
        return banner

    def _heard_enough(self, banner: bytes) -> bool:
        if self._expect is not None and self._expect not in banner:
            return False
        observed = Observed(banner=banner)
        return all(evaluate(c, observed).ok for c in self._banner_conditions)


def _describe_connect_error(error: OSError) -> str:
    if isinstance(error, socket.gaierror):
        return "cannot resolve host"
    if error.errno is None and str(error).startswith("Multiple exceptions:"):
        # Python 3.11 folds one error per address into this text; the errnos are all it keeps.
        return _describe_connect_errnos([int(n) for n in _ERRNO_IN_TEXT.findall(str(error))])
    return describe_errno(error.errno, error.strerror or str(error))


def _describe_connect_errnos(errnos: list[int | None]) -> str:
    """One reason for all addresses tried: theirs if they agree, ignoring absent address families."""
    telling = [n for n in errnos if n not in _NO_SUCH_FAMILY] or errnos
    if telling and all(n == telling[0] for n in telling) and telling[0] is not None:
        return describe_errno(telling[0])
    return "cannot connect on any address"
