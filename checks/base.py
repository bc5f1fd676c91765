"""The one interface every check type implements, and the result it produces.

A check type implements ``probe()`` and nothing else; ``Check.run()`` wraps it, times it,
enforces the timeout and turns every error into a failing result, so a broken or hanging
probe yields a result, never a dead task. Checks know nothing of incidents.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from agent.config import CheckConfigBase
from agent.durations import format_duration

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

    from agent.dockerclient import DockerEngine


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One run of one check."""

    check: str
    ok: bool
    started_at: float  # wall-clock epoch seconds
    latency: float  # seconds
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The short form kept in history and evidence."""
        return {
            "at": self.started_at,
            "ok": self.ok,
            "latency_ms": round(self.latency * 1000, 1),
            "message": self.message,
        }


@dataclass(slots=True)
class Outcome:
    """What a probe reports: passing or failing, why, and what it saw."""

    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _no_baseline(check: str) -> float | None:
    return None


class CheckContext:
    """Shared clients a check may use; created lazily so unused ones cost nothing."""

    def __init__(self, docker: DockerEngine | None = None) -> None:
        self._http: aiohttp.ClientSession | None = None
        self.docker = docker
        # A check's rolling latency baseline in seconds (None until it has enough samples);
        # the agent installs the store-backed one, conditions such as ``latency > 2x baseline`` read it.
        self.baseline: Callable[[str], float | None] = _no_baseline

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            import aiohttp

            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                auto_decompress=True,
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()


# Covariant: an ``HttpCheck`` (a ``Check[HttpCheckConfig]``) is a ``Check[CheckConfigBase]``.
ConfigT = TypeVar("ConfigT", bound=CheckConfigBase, covariant=True)


class Check(Generic[ConfigT]):
    """Base of every check type. Subclasses set the class variables and implement ``probe``."""

    # Declared before ``type``, which hides the builtin ``type`` in this class body.
    config_model: ClassVar[type[CheckConfigBase]]
    """Validates the check's entry in ``checks:``; ``type`` is its ``type:`` value."""
    needs: ClassVar[frozenset[str]] = frozenset()
    """What the agent must provide for it: ``"docker"`` (an engine), ``"http"`` (a client session)."""
    type: ClassVar[str]

    def __init__(self, config: ConfigT, context: CheckContext) -> None:
        self.config = config
        self.context = context

    @property
    def name(self) -> str:
        name: str = self.config.name
        return name

    @property
    def target(self) -> str:
        """What the check probes, as shown and stored (a URL, host:port, a container).

        The shown form: it goes into incidents, payloads, the API and ``once``, so a check whose
        config holds credentials (URL user-info, a token parameter) returns it redacted and
        probes with the real value.
        """
        raise NotImplementedError

    async def probe(self) -> Outcome:
        raise NotImplementedError

    async def run(self, clock: Callable[[], float] = time.time) -> CheckResult:
        started = clock()
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self.config.timeout):
                outcome = await self.probe()
        except TimeoutError:
            outcome = Outcome(False, f"timed out after {format_duration(self.config.timeout)}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken probe is a failing result, never a dead task
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        return CheckResult(
            check=self.name,
            ok=outcome.ok,
            started_at=started,
            latency=time.monotonic() - t0,
            message=outcome.message,
            details=outcome.details,
        )



AnyCheck = Check[CheckConfigBase]
"""A check of any type, as the scheduler and the engine hold them."""
