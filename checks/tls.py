"""The ``tls`` check: a TLS handshake with ``host:port``, judged on the server's certificate.

It fails on a certificate that has expired, is not valid yet or expires within
``min_days_left`` days, and (unless ``verify: false``) on a wrong host name or an untrusted
chain. Every verdict says ``days_left``: when verification fails, a second handshake without
verification reads the certificate's dates, so "expired 3 days ago" reads as such rather than
as a bare verify error.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from agent.config import CheckConfigBase
from agent.config.model import After, Before
from agent.config.types import NonEmptyStr, Port
from checks.base import Check, CheckContext, Outcome
from checks.certs import CaFile, CertificateDates, client_context, days_left, read_dates
from checks.tcp import _CONNECT_KWARGS, _describe_connect_errnos, _describe_connect_error

CLOSE_WAIT = 1.0
"""Seconds given to the polite end of a TLS session (close_notify) before the socket is dropped."""

# The verify errors that are about dates, which the dates themselves say better.
_DATE_ERRORS = ("certificate has expired", "certificate is not yet valid")


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number of days, not true/false")
    return value


def _days(value: float) -> float:
    if not 0 <= value <= 36500:
        raise ValueError(f"must be between 0 and 36500 days, got {value:g}")
    return value


class TlsCheckConfig(CheckConfigBase):
    """Handshake with a TLS server and judge its certificate."""

    type: Literal["tls"]
    host: NonEmptyStr
    port: Port = 443
    server_name: NonEmptyStr | None = None  # the name asked for (SNI) and verified; default: host
    ca_file: CaFile | None = None
    min_days_left: Annotated[float, Before(_no_bool), After(_days)] = 14.0
    verify: bool = True


class TlsCheck(Check[TlsCheckConfig]):
    """Opens a TLS session with ``config.host:config.port`` and judges the certificate it is shown."""

    type: ClassVar[str] = "tls"
    config_model = TlsCheckConfig
    needs = frozenset()

    def __init__(self, config: TlsCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        host: str = config.host
        self._target = f"[{host}]:{config.port}" if ":" in host else f"{host}:{config.port}"
        self._server_name: str = config.server_name or host
        self._context: ssl.SSLContext | None = None  # made off the event loop at first use
        self._unverified: ssl.SSLContext | None = None

    @property
    def target(self) -> str:
        return self._target

    async def probe(self) -> Outcome:
        config = self.config
        if self._context is None:
            self._context = await asyncio.to_thread(client_context, config.verify, config.ca_file)
        try:
            der = await self._peer_certificate(self._context)
        except ssl.SSLCertVerificationError as exc:
            return await self._unverified_outcome(exc.verify_message or exc.reason or str(exc))
        except ssl.SSLError as exc:
            return Outcome(False, f"TLS error: {exc.reason or exc}")
        except OSError as exc:
            return Outcome(False, _describe_connect_error(exc))
        except ExceptionGroup as group:  # only with all_errors=True (Python >= 3.12)
            return Outcome(False, _describe_connect_errnos([getattr(e, "errno", None) for e in group.exceptions]))
        if der is None:
            return Outcome(False, "TLS error: the server showed no certificate")
        try:
            dates = read_dates(der)
        except ValueError as exc:
            return Outcome(False, f"TLS error: cannot read the certificate's dates ({exc})")
        return self._judge(dates, verified=config.verify)

    async def _peer_certificate(self, context: ssl.SSLContext) -> bytes | None:
        reader, writer = await asyncio.open_connection(
            self.config.host, self.config.port, ssl=context, server_hostname=self._server_name, **_CONNECT_KWARGS
        )
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            return der if isinstance(der, bytes) else None
        finally:
            writer.close()
            try:
                async with asyncio.timeout(CLOSE_WAIT):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                writer.transport.abort()  # the certificate is read; the rest is courtesy

    async def _unverified_outcome(self, reason: str) -> Outcome:
        """Verification failed: read the dates without it, to say which and how many days are left."""
        if self._unverified is None:
            self._unverified = await asyncio.to_thread(client_context, False, None)
        try:
            der = await self._peer_certificate(self._unverified)
            dates = read_dates(der) if der is not None else None
        except (OSError, ValueError, ExceptionGroup):
            dates = None
        failure = f"certificate verify failed: {reason}"
        if dates is None:
            return Outcome(False, failure)
        outcome = self._judge(dates, verified=False)
        if outcome.ok:  # the dates are fine: the chain or the name is not
            return Outcome(False, f"{failure}; days_left {outcome.details['days_left']:.1f}", outcome.details)
        if reason not in _DATE_ERRORS:
            return Outcome(False, f"{outcome.message}; {failure}", outcome.details)
        return outcome

    def _judge(self, dates: CertificateDates, *, verified: bool) -> Outcome:
        now = time.time()
        left = days_left(dates, now)
        details: dict[str, Any] = {
            "days_left": round(left, 2),
            "not_before": _iso(dates.not_before),
            "not_after": _iso(dates.not_after),
            "verified": verified,
        }
        shown = f"days_left {left:.1f}"
        if now < dates.not_before:
            return Outcome(False, f"certificate not valid before {details['not_before']}: {shown}", details)
        if left < 0:
            return Outcome(False, f"certificate expired: {shown}", details)
        minimum = self.config.min_days_left
        if left < minimum:
            return Outcome(False, f"certificate expires soon: {shown} (min_days_left {minimum:g})", details)
        return Outcome(True, f"certificate valid: {shown}", details)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
