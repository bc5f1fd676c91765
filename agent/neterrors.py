"""Operator words for why a network connection failed, shared by checks and notifiers.

A refused connection reads "connection refused" whether a tcp check, an http check or a
webhook delivery met it, so incident titles and delivery details can be compared and grepped.
"""

from __future__ import annotations

import errno
import os

# The failures an operator meets often enough to deserve a short phrase; any other errno is
# told in the system's own words after "cannot connect:".
_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
}


def describe_errno(number: int | None, text: str = "") -> str:
    """A one-line reason for a failed connection with this errno (``text`` when there is none)."""
    if number is not None:
        reason = _REASONS.get(number)
        if reason is not None:
            return reason
        text = os.strerror(number)
    return f"cannot connect: {text[:1].lower()}{text[1:]}" if text else "cannot connect"


def describe_os_error(error: BaseException) -> str:
    """A one-line reason for a failed connection, from the error the socket layer raised."""
    number = getattr(error, "errno", None)
    text = getattr(error, "strerror", None) or str(error)
    return describe_errno(number if isinstance(number, int) else None, text)
