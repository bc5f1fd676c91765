"""Connection failures read the same wherever they are met: tcp and http checks, webhooks."""

from __future__ import annotations

import errno

import pytest

from agent.neterrors import describe_errno, describe_os_error


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (errno.ECONNREFUSED, "connection refused"),
        (errno.EHOSTUNREACH, "host unreachable"),
        (errno.ENETUNREACH, "network unreachable"),
        (errno.ETIMEDOUT, "connection timed out"),
        (errno.ECONNRESET, "cannot connect: connection reset by peer"),
    ],
)
def test_an_errno_reads_as_a_short_reason(number: int, expected: str) -> None:
    assert describe_errno(number) == expected


def test_an_unnamed_errno_is_told_in_the_systems_words_not_the_callers() -> None:
    assert describe_errno(errno.EACCES, "ignored") == "cannot connect: permission denied"


def test_without_an_errno_the_given_text_is_the_reason() -> None:
    assert describe_errno(None, "Something odd") == "cannot connect: something odd"
    assert describe_errno(None) == "cannot connect"


def test_an_os_error_is_described_by_its_errno() -> None:
    assert describe_os_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")) == "connection refused"
    assert describe_os_error(OSError("no errno here")) == "cannot connect: no errno here"
    assert describe_os_error(OSError()) == "cannot connect"
