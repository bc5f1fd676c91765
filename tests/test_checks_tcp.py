"""The tcp check against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from checks.base import CheckContext
from checks.tcp import TcpCheck, _describe_connect_error


def tcp_config(host: str, port: int, **overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict(
        name="db", type="tcp", interval=10.0, timeout=2.0, open_after=0.0, resolve_after=1,
        severity="critical", notify=[], container=None, heal=None, host=host, port=port,
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.fixture
async def ctx() -> AsyncIterator[CheckContext]:
    context = CheckContext()
    yield context
    await context.close()


async def test_an_open_port_passes_and_the_connection_is_closed_at_once(ctx) -> None:
    hung_up = asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.read() == b"":  # EOF: the check closed its end without sending anything
            hung_up.set()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await TcpCheck(tcp_config("127.0.0.1", port), ctx).run()
        await asyncio.wait_for(hung_up.wait(), timeout=5)
    finally:
        server.close()
        await server.wait_closed()

    assert result.ok
    assert result.message == "connected"


async def test_a_closed_port_fails_as_connection_refused(ctx) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refuses connections

        result = await TcpCheck(tcp_config("127.0.0.1", port), ctx).run()

    assert not result.ok
    assert result.message == "connection refused"


async def test_localhost_by_name_is_resolved_and_checked(ctx) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await TcpCheck(tcp_config("localhost", port), ctx).run()
    finally:
        server.close()
        await server.wait_closed()

    assert result.ok


def test_target_is_host_and_port() -> None:
    context = CheckContext()
    assert TcpCheck(tcp_config("127.0.0.1", 5432), context).target == "127.0.0.1:5432"
    assert TcpCheck(tcp_config("::1", 5432), context).target == "[::1]:5432"


def test_a_dns_failure_reads_cannot_resolve_host() -> None:
    # Resolving a real unknown name would send a query off this host, so the error is built here.
    error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    assert _describe_connect_error(error) == "cannot resolve host"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Python 3.11 folds one error per address into one message without an errno.
        ("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0), "
         "[Errno 111] Connect call failed ('127.0.0.1', 5432)", "connection refused"),
        ("Multiple exceptions: [Errno 99] Cannot assign requested address, "
         "[Errno 111] Connect call failed ('127.0.0.1', 5432)", "connection refused"),
        ("Multiple exceptions: [Errno 113] No route to host, "
         "[Errno 111] Connect call failed ('127.0.0.1', 5432)", "cannot connect on any address"),
    ],
)
def test_errors_from_several_addresses_are_summarised(text: str, reason: str) -> None:
    assert _describe_connect_error(OSError(text)) == reason


def test_other_errors_name_their_cause() -> None:
    assert _describe_connect_error(OSError(errno.EHOSTUNREACH, "No route to host")) == "host unreachable"
    assert _describe_connect_error(OSError(errno.ECONNRESET, "x")) == "cannot connect: connection reset by peer"
