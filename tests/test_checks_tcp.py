"""The tcp check against real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.config import load_config
from checks.base import CheckContext
from checks.conditions import TCP_SUBJECTS, Condition, parse
from checks.tcp import TcpCheck, TcpCheckConfig, _describe_connect_error


def tcp_config(host: str, port: int, **overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict(
        name="db", type="tcp", interval=10.0, timeout=2.0, open_after=0.0, resolve_after=1,
        severity="critical", notify=[], container=None, heal=None, host=host, port=port,
        send=None, expect=None, conditions=[],
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


# --- send, expect and tcp.banner -----------------------------------------------------------------


@asynccontextmanager
async def serving(on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[int]:
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def banner_server(banner: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """Says ``banner`` at once, then waits for the client to hang up (as SSH and SMTP servers do)."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        await reader.read()
        writer.close()

    return on_connect


def tcp_conditions(*texts: str) -> list[Condition]:
    return [parse(text, TCP_SUBJECTS, check_type="tcp") for text in texts]


async def test_send_is_written_and_expect_reads_the_answer(ctx) -> None:
    heard: list[bytes] = []

    async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.readline())
        writer.write(b"+PONG\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async with serving(pong) as port:
        result = await TcpCheck(tcp_config("127.0.0.1", port, send="PING\r\n", expect="+PONG"), ctx).run()

    assert result.ok, result.message
    assert result.message == "connected"
    assert heard == [b"PING\r\n"]


async def test_send_alone_writes_and_hangs_up_without_reading(ctx) -> None:
    heard = asyncio.Queue[bytes]()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.put_nowait(await reader.read())  # until the check hangs up
        writer.close()

    async with serving(record) as port:
        result = await TcpCheck(tcp_config("127.0.0.1", port, send="QUIT\n"), ctx).run()
        received = await asyncio.wait_for(heard.get(), timeout=5)

    assert result.ok
    assert received == b"QUIT\n"


async def test_a_banner_without_the_expected_text_fails_quoting_it(ctx) -> None:
    async with serving(banner_server(b"SSH-2.0-OpenSSH_9.6\r\n")) as port:
        good = await TcpCheck(tcp_config("127.0.0.1", port, expect="SSH-2.0"), ctx).run()
        bad = await TcpCheck(tcp_config("127.0.0.1", port, timeout=0.5, expect="220 "), ctx).run()

    assert good.ok, good.message
    assert not bad.ok
    assert bad.message == "banner does not contain '220 ' (got \"SSH-2.0-OpenSSH_9.6\\r\\n\")"


async def test_a_peer_that_hangs_up_in_silence_fails_expect(ctx) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(silent) as port:
        result = await TcpCheck(tcp_config("127.0.0.1", port, expect="+OK"), ctx).run()

    assert result.message == "banner does not contain '+OK' (got nothing)"


async def test_only_the_first_kib_is_read(ctx) -> None:
    async with serving(banner_server(b"x" * 1024 + b"needle")) as port:
        result = await TcpCheck(tcp_config("127.0.0.1", port, timeout=0.5, expect="needle"), ctx).run()

    assert not result.ok
    assert result.message == f"banner does not contain 'needle' (got \"{'x' * 120}…\")"


async def test_a_banner_that_arrives_in_pieces_is_waited_for(ctx) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for piece in (b"220 mail", b".example ", b"ESMTP ready\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)  # the peer is slow; that is what is under test
        await reader.read()
        writer.close()

    async with serving(slow) as port:
        result = await TcpCheck(tcp_config("127.0.0.1", port, expect="ESMTP"), ctx).run()

    assert result.ok, result.message


@pytest.mark.parametrize(
    ("condition", "ok"),
    [
        ('tcp.banner contains "OpenSSH"', True),
        ('tcp.banner contains "Dropbear"', False),
        ('tcp.banner matches "^SSH-2\\\\.0-"', True),
        ('tcp.banner matches "^SSH-1"', False),
        ('tcp.banner == "SSH-2.0-OpenSSH_9.6\\r\\n"', True),
        ('tcp.banner != "SSH-2.0-OpenSSH_9.6\\r\\n"', False),
        ('tcp.banner in ["SSH-2.0-OpenSSH_9.6\\r\\n", "x"]', True),
        ('tcp.banner not in ["SSH-2.0-OpenSSH_9.6\\r\\n"]', False),
        ("latency < 1m", True),
        ("latency > 1m", False),
    ],
)
async def test_banner_conditions(ctx, condition: str, ok: bool) -> None:
    async with serving(banner_server(b"SSH-2.0-OpenSSH_9.6\r\n")) as port:
        config = tcp_config("127.0.0.1", port, timeout=0.5, conditions=tcp_conditions(condition))
        result = await TcpCheck(config, ctx).run()

    assert result.ok is ok, result.message
    if ok:
        assert result.message == "connected"
    elif condition.startswith("tcp.banner"):
        assert result.message == f'condition failed: {condition} (got "SSH-2.0-OpenSSH_9.6\\r\\n")'
    else:
        assert result.message.startswith(f"condition failed: {condition} (got ")


async def test_a_connection_reset_while_reading_is_a_failure(ctx) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        await reader.readline()
        writer.close()

    async with serving(reset) as port:
        result = await TcpCheck(tcp_config("127.0.0.1", port, send="HELLO\n", expect="hi"), ctx).run()

    assert not result.ok
    assert result.message == "connected, then connection reset by peer"


def test_send_expect_and_conditions_load_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""\
        checks:
          - name: redis
            type: tcp
            host: 127.0.0.1
            port: 6379
            send: "PING\\r\\n"
            expect: "+PONG"
            conditions: ["latency < 100ms", 'tcp.banner matches "^\\\\+PONG"']
    """))

    check = load_config(path, {}).check("redis")

    assert isinstance(check, TcpCheckConfig)
    assert (check.send, check.expect) == ("PING\r\n", "+PONG")
    assert [str(c) for c in check.conditions] == ["latency < 100ms", 'tcp.banner matches "^\\\\+PONG"']
