"""The ``tcp`` check: passes when a TCP connection to ``host:port`` opens.

``asyncio.open_connection`` on purpose: a leaner ``loop.sock_connect`` on a raw socket was
measured to hang forever on some targets, even after cancellation (RECIPES.md).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import sys
from typing import Any, ClassVar, Literal

from agent.config import CheckConfigBase
from agent.config.types import NonEmptyStr, Port
from agent.neterrors import describe_errno
from checks.base import Check, CheckContext, Outcome

# With several addresses per host (localhost -> ::1 and 127.0.0.1), asyncio folds differing
# errors into one OSError without an errno; from 3.12 it can hand them all back instead.
_CONNECT_KWARGS: dict[str, Any] = {"all_errors": True} if sys.version_info >= (3, 12) else {}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")
# A host without IPv6 fails ::1 with these; they say nothing about the target.
_NO_SUCH_FAMILY = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})


class TcpCheckConfig(CheckConfigBase):
    """Open a TCP connection."""

    type: Literal["tcp"]
    host: NonEmptyStr
    port: Port


class TcpCheck(Check[TcpCheckConfig]):
    """Opens a connection to ``config.host:config.port`` and closes it at once."""

    type: ClassVar[str] = "tcp"
    config_model = TcpCheckConfig
    needs = frozenset()

    def __init__(self, config: TcpCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        host: str = config.host
        self._target = f"[{host}]:{config.port}" if ":" in host else f"{host}:{config.port}"

    @property
    def target(self) -> str:
        return self._target

    async def probe(self) -> Outcome:
        try:
            _, writer = await asyncio.open_connection(self.config.host, self.config.port, **_CONNECT_KWARGS)
        except OSError as exc:
            return Outcome(False, _describe_connect_error(exc))
        except ExceptionGroup as group:  # only with all_errors=True (Python >= 3.12)
            return Outcome(False, _describe_connect_errnos([getattr(e, "errno", None) for e in group.exceptions]))
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # the connection opened, which is all this check asks
        return Outcome(True, "connected")


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
