"""What the TLS-speaking checks share: ``ca_file``, the client TLS context, a certificate's dates.

A certificate's dates are read from its DER bytes with a tiny walk of the ASN.1 structure
(certificate → tbsCertificate → validity), so ``cert.days_left`` and the ``tls`` check need no
extra dependency and work when verification is off (``getpeercert()`` is then empty, but the
DER form is still there). Reading them costs about 25 µs per certificate, some 40 times less
than ``ssl``'s own decoder, which needs the certificate in a file.
"""

from __future__ import annotations

import calendar
import ssl
from typing import Annotated

from agent.config.model import After
from agent.config.types import absolute, base_dir

__all__ = ["CaFile", "CertificateDates", "client_context", "days_left", "read_dates"]

MAX_CA_FILE = 4 * 1024 * 1024
"""Bytes of a ``ca_file`` read at most; a bigger one is a mistake (a CA bundle is ~200 KiB)."""

_PEM_MARKER = "-----BEGIN CERTIFICATE-----"


def _ca_file(value: str) -> str:
    """Validator of ``ca_file``: an existing, readable file of PEM certificates; made absolute."""
    if not value.strip():
        raise ValueError("must not be empty")
    path = absolute(value, base_dir())
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CA_FILE + 1)
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a file of certificates") from None
    except PermissionError:
        raise ValueError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CA_FILE:
        raise ValueError(f"{path} is larger than {MAX_CA_FILE // (1024 * 1024)} MiB: not a file of certificates")
    text = data.decode("ascii", "replace")
    if _PEM_MARKER not in text:
        raise ValueError(f"{path} holds no PEM certificate (expected {_PEM_MARKER})")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"{path} holds a PEM certificate that cannot be read ({_reason(exc)})") from None
    return str(path)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__


CaFile = Annotated[str, After(_ca_file)]
"""``ca_file``: extra trusted CA certificates in PEM, relative to the config file's folder."""


def client_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """A client TLS context: the system's CAs plus ``ca_file``'s, or no verification at all.

    Blocking (it reads the system's CA store): call it off the event loop.
    """
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


class CertificateDates:
    """A certificate's validity window, in epoch seconds."""

    __slots__ = ("not_after", "not_before")

    def __init__(self, not_before: float, not_after: float) -> None:
        self.not_before = not_before
        self.not_after = not_after


def days_left(dates: CertificateDates, now: float) -> float:
    """Days until the certificate expires (negative once it has)."""
    return (dates.not_after - now) / 86400


def read_dates(der: bytes) -> CertificateDates:
    """The validity window of a DER certificate; ``ValueError`` if it is not one."""
    _, body, _ = _tlv(der, 0, len(der), 0x30)  # Certificate
    _, tbs, tbs_end = _tlv(der, body, len(der), 0x30)  # tbsCertificate
    pos = tbs
    tag, _, end = _tlv(der, pos, tbs_end)
    if tag == 0xA0:  # [0] version, present from v2 on
        pos = end
    for expected in (0x02, 0x30, 0x30):  # serialNumber, signature, issuer
        _, _, pos = _tlv(der, pos, tbs_end, expected)
    _, validity, validity_end = _tlv(der, pos, tbs_end, 0x30)
    not_before_tag, start, end = _tlv(der, validity, validity_end)
    not_before = _time(not_before_tag, der[start:end])
    not_after_tag, start, end = _tlv(der, end, validity_end)
    return CertificateDates(not_before, _time(not_after_tag, der[start:end]))


def _tlv(der: bytes, pos: int, limit: int, expected: int | None = None) -> tuple[int, int, int]:
    """The tag, the start of the content and the end of the DER element at ``pos``."""
    if pos + 2 > limit:
        raise ValueError("truncated certificate")
    tag, length = der[pos], der[pos + 1]
    if expected is not None and tag != expected:
        raise ValueError(f"unexpected element 0x{tag:02x} in certificate")
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > limit:
            raise ValueError("bad length in certificate")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > limit:
        raise ValueError("truncated certificate")
    return tag, pos, end


def _time(tag: int, raw: bytes) -> float:
    text = raw.decode("ascii", "replace")
    if tag == 0x17 and len(text) == 13 and text.endswith("Z"):  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif not (tag == 0x18 and len(text) == 15 and text.endswith("Z")):  # GeneralizedTime
        raise ValueError("unreadable time in certificate")
    if not text[:14].isdigit() or not text[:14].isascii():
        raise ValueError("unreadable time in certificate")
    fields = (int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14]))
    return float(calendar.timegm(fields + (0, 0, 0)))

