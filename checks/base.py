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
    from checks.http_lean import LeanPool


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One run of one check."""

    check: str
    ok: bool
    started_at: float  # wall-clock epoch seconds
    latency: float  # seconds
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    warning: bool = False  # passed, with a warning (ok stays True): a command's exit 1, a warn_* threshold

    @property
    def status(self) -> str:
        """``ok``, ``warning`` or ``failing``."""
        return "failing" if not self.ok else ("warning" if self.warning else "ok")

    def summary(self) -> dict[str, Any]:
        """The short form kept in history and evidence (``warning`` only when there is one)."""
        short: dict[str, Any] = {
            "at": self.started_at,
            "ok": self.ok,
            "latency_ms": round(self.latency * 1000, 1),
            "message": self.message,
        }
        if self.warning and self.ok:
            short["warning"] = True
        return short


@dataclass(slots=True)
class Outcome:
    """What a probe reports: passing or failing, why, and what it saw."""

    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    warning: bool = False  # with ok: passing, with a warning


SHOWN_DETAILS_LIMIT = 8192
"""Bytes of JSON of a result's details that the API and evidence show; past it, only a cut perfdata."""
_SHOWN_PERFDATA = 20


def shown_details(details: dict[str, Any], mask: Callable[[str], str] | None = None) -> dict[str, Any]:
    """A result's details as ``/api/checks`` and the evidence show them: small and bounded, every
    string in them passed through ``mask`` (which hides configured secrets).

    The HTTP response is left out (the evidence has its own, redacted section for it). Details
    larger than ``SHOWN_DETAILS_LIMIT`` as JSON keep only their first perfdata entries.
    """
    import json

    shown = {k: v for k, v in details.items() if k != "response"}
    if not shown:
        return {}
    if mask is not None:
        shown = {k: _masked(v, mask) for k, v in shown.items()}
    try:
        size = len(json.dumps(shown, default=str))
    except ValueError:  # a circular structure: nothing a probe should produce
        size = SHOWN_DETAILS_LIMIT + 1
    if size <= SHOWN_DETAILS_LIMIT:
        return shown
    cut: dict[str, Any] = {"truncated": True}
    perfdata = shown.get("perfdata")
    if isinstance(perfdata, list):
        cut["perfdata"] = perfdata[:_SHOWN_PERFDATA]
    return cut


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v, mask) for v in value]
    return value


def _no_baseline(check: str) -> float | None:
    return None


class CheckContext:
    """Shared clients a check may use; created lazily so unused ones cost nothing."""

    def __init__(self, docker: DockerEngine | None = None) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._lean_http: LeanPool | None = None
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
                # No cookies kept: each probe stands alone (a target's Set-Cookie is not sent back
                # on the next probe, nor by another check of that host), as over the lean client.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    @property
    def lean_http(self) -> LeanPool:
        """The keep-alive connections of the http checks that skip ``ClientSession`` (checks/http_lean.py)."""
        if self._lean_http is None:
            from checks.http_lean import LeanPool

            self._lean_http = LeanPool()
        return self._lean_http

    async def close(self) -> None:
        if self._lean_http is not None:
            self._lean_http.close()
            self._lean_http = None
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
            warning=outcome.ok and outcome.warning,
        )



AnyCheck = Check[CheckConfigBase]
"""A check of any type, as the scheduler and the engine hold them."""
