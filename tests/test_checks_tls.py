"""The tls check, ``ca_file`` and ``cert.days_left`` against real TLS servers on 127.0.0.1.

Certificates are made here: by a throwaway CA (``trustme``) with the dates each test needs, and
a self-signed one by the ``openssl`` command.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.config import ConfigError, load_config
from checks.base import CheckContext
from checks.certs import read_dates
from checks.http import HttpCheck, HttpCheckConfig
from checks.tls import TlsCheck, TlsCheckConfig

ServerFactory = Callable[..., Awaitable[TestServer]]
DAY = timedelta(days=1)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def leaf(ca: trustme.CA, *names: str, valid_from: timedelta = -DAY, valid_for: timedelta = 90 * DAY) -> trustme.LeafCert:
    """A certificate for ``names`` (default 127.0.0.1), valid from now+valid_from until now+valid_for."""
    start = now()
    return ca.issue_cert(*(names or ("127.0.0.1",)), not_before=start + valid_from, not_after=start + valid_for)


def server_context(cert: trustme.LeafCert | tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if isinstance(cert, tuple):
        context.load_cert_chain(*cert)
    else:
        cert.configure_cert(context)
    return context


@asynccontextmanager
async def tls_server(cert: trustme.LeafCert | tuple[Path, Path]) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 that waits for the client to hang up; yields its port."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=server_context(cert))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def tls_check(port: int, **overrides: Any) -> TlsCheck:
    config = TlsCheckConfig.model_validate(
        {"name": "site", "type": "tls", "host": "127.0.0.1", "port": port, "interval": "10s", "timeout": "5s",
         **overrides}
    )
    return TlsCheck(config, CheckContext())


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("self-signed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "30", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


# --- reading a certificate's dates -------------------------------------------------------------


def test_the_dates_of_a_certificate_are_read_from_its_der_bytes(ca: trustme.CA) -> None:
    start = now()
    cert = ca.issue_cert("127.0.0.1", not_before=start - 2 * DAY, not_after=start + 5 * DAY)
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())

    dates = read_dates(der)

    assert dates.not_before == (start - 2 * DAY).timestamp()
    assert dates.not_after == (start + 5 * DAY).timestamp()


def test_dates_beyond_2049_are_read_too(ca: trustme.CA) -> None:
    far = datetime(2061, 3, 4, 5, 6, 7, tzinfo=UTC)  # GeneralizedTime, not UTCTime, from 2050 on
    cert = ca.issue_cert("127.0.0.1", not_after=far)

    assert read_dates(ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())).not_after == far.timestamp()


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x82\xff\xff", b"\x04\x00", b"\x30\x03\x30\x01\x00"])
def test_bytes_that_are_not_a_certificate_are_a_value_error(der: bytes) -> None:
    with pytest.raises(ValueError):
        read_dates(der)


# --- the tls check -----------------------------------------------------------------------------


async def test_a_valid_certificate_passes_with_days_left(ca, ca_file) -> None:
    async with tls_server(leaf(ca, valid_for=90 * DAY + timedelta(hours=1))) as port:
        result = await tls_check(port, ca_file=str(ca_file)).run()

    assert result.ok, result.message
    assert result.message == "certificate valid: days_left 90.0"
    assert result.details["verified"] is True
    assert 89.9 < result.details["days_left"] <= 90.05


async def test_a_certificate_expiring_within_min_days_left_fails(ca, ca_file) -> None:
    async with tls_server(leaf(ca, valid_for=5 * DAY + timedelta(hours=1))) as port:
        result = await tls_check(port, ca_file=str(ca_file)).run()
        relaxed = await tls_check(port, ca_file=str(ca_file), min_days_left=3).run()

    assert not result.ok
    assert result.message == "certificate expires soon: days_left 5.0 (min_days_left 14)"
    assert relaxed.ok


async def test_an_expired_certificate_fails_saying_so(ca, ca_file) -> None:
    async with tls_server(leaf(ca, valid_from=-30 * DAY, valid_for=-3 * DAY)) as port:
        result = await tls_check(port, ca_file=str(ca_file)).run()
        unverified = await tls_check(port, verify=False).run()

    assert not result.ok
    assert result.message == "certificate expired: days_left -3.0"
    assert result.details["verified"] is False  # the dates came from a second, unverified handshake
    assert unverified.message == "certificate expired: days_left -3.0"


async def test_a_certificate_not_valid_yet_fails(ca, ca_file) -> None:
    async with tls_server(leaf(ca, valid_from=10 * DAY, valid_for=100 * DAY)) as port:
        result = await tls_check(port, ca_file=str(ca_file)).run()

    assert not result.ok
    assert result.message.startswith("certificate not valid before ")
    assert result.message.endswith("Z: days_left 100.0")


async def test_a_certificate_for_another_name_fails_unless_that_name_is_asked_for(ca, ca_file) -> None:
    async with tls_server(leaf(ca, "service.internal")) as port:
        wrong = await tls_check(port, ca_file=str(ca_file)).run()
        named = await tls_check(port, ca_file=str(ca_file), server_name="service.internal").run()
        dates_only = await tls_check(port, verify=False).run()

    assert not wrong.ok
    assert wrong.message == (
        "certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'.; days_left 90.0"
    )
    assert named.ok, named.message
    assert dates_only.ok


async def test_a_chain_from_an_unknown_ca_is_untrusted(ca) -> None:
    async with tls_server(leaf(ca)) as port:
        result = await tls_check(port).run()

    assert not result.ok
    assert result.message == "certificate verify failed: unable to get local issuer certificate; days_left 90.0"


async def test_a_self_signed_certificate_is_trusted_only_through_ca_file(self_signed) -> None:
    cert, _ = self_signed
    async with tls_server(self_signed) as port:
        untrusted = await tls_check(port).run()
        trusted = await tls_check(port, ca_file=str(cert)).run()
        dates_only = await tls_check(port, verify=False).run()

    assert not untrusted.ok
    assert untrusted.message.startswith("certificate verify failed: self-signed certificate; days_left ")
    assert trusted.ok, trusted.message
    assert trusted.message.startswith("certificate valid: days_left 3")  # 29.9 or 30.0
    assert dates_only.ok
    assert dates_only.details["verified"] is False


async def test_a_closed_port_is_connection_refused() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    result = await tls_check(port).run()

    assert not result.ok
    assert result.message == "connection refused"


async def test_a_server_that_does_not_speak_tls_is_a_tls_error() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    try:
        result = await tls_check(server.sockets[0].getsockname()[1]).run()
    finally:
        server.close()
        await server.wait_closed()

    assert not result.ok
    assert result.message.startswith("TLS error: ")


async def test_a_server_that_never_answers_the_handshake_times_out() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        check = tls_check(server.sockets[0].getsockname()[1], interval="1s", timeout="300ms")
        result = await asyncio.wait_for(check.run(), timeout=5)
    finally:
        release.set()
        server.close()
        await server.wait_closed()

    assert not result.ok
    assert result.message == "timed out after 300ms"


# --- http: ca_file and cert.days_left ----------------------------------------------------------


async def https_server(aiohttp_server: ServerFactory, cert: trustme.LeafCert | tuple[Path, Path]) -> TestServer:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="secure")

    app = web.Application()
    app.router.add_get("/", ok)
    return await aiohttp_server(app, ssl=server_context(cert))


def http_check(url: str, **overrides: Any) -> HttpCheck:
    config = HttpCheckConfig.model_validate(
        {"name": "web", "type": "http", "url": url, "interval": "10s", "timeout": "5s", **overrides}
    )
    return HttpCheck(config, CheckContext())


async def test_an_http_check_trusts_the_cas_of_its_ca_file(aiohttp_server, ca, ca_file) -> None:
    server = await https_server(aiohttp_server, leaf(ca))
    url = str(server.make_url("/"))
    with_ca, without = http_check(url, ca_file=str(ca_file)), http_check(url)
    try:
        trusted, untrusted = await with_ca.run(), await without.run()
    finally:
        await with_ca.context.close()
        await without.context.close()

    assert trusted.ok, trusted.message
    assert trusted.message == "HTTP 200"
    assert untrusted.message == "TLS error: certificate verify failed: unable to get local issuer certificate"


@pytest.mark.parametrize(
    ("valid_for", "ok", "message"),
    [
        (90 * DAY + timedelta(hours=1), True, "HTTP 200"),
        (5 * DAY + timedelta(hours=1), False, "HTTP 200: condition failed: cert.days_left > 14 (got 5.0)"),
    ],
)
async def test_cert_days_left_is_read_even_with_verify_tls_off(aiohttp_server, ca, valid_for, ok, message) -> None:
    server = await https_server(aiohttp_server, leaf(ca, valid_for=valid_for))
    check = http_check(str(server.make_url("/")), verify_tls=False, conditions=["cert.days_left > 14"])
    try:
        result = await check.run()
        again = await check.run()  # over the pooled connection: the certificate is still known
    finally:
        await check.context.close()

    assert (result.ok, result.message) == (ok, message)
    assert (again.ok, again.message) == (ok, message)


async def test_cert_days_left_with_a_verified_certificate(aiohttp_server, ca, ca_file) -> None:
    server = await https_server(aiohttp_server, leaf(ca, valid_for=20 * DAY + timedelta(hours=1)))
    check = http_check(str(server.make_url("/")), ca_file=str(ca_file), conditions=["cert.days_left < 20"])
    try:
        result = await check.run()
    finally:
        await check.context.close()

    assert result.message == "HTTP 200: condition failed: cert.days_left < 20 (got 20.0)"


# --- config ------------------------------------------------------------------------------------


def write_config(folder: Path, text: str) -> Path:
    path = folder / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_tls_check_loads_with_its_defaults(tmp_path: Path, ca_file: Path) -> None:
    (tmp_path / "certs").mkdir()
    shutil.copy(ca_file, tmp_path / "certs" / "ca.pem")
    config = load_config(write_config(tmp_path, """\
        checks:
          - {name: site, type: tls, host: example.internal}
          - {name: other, type: tls, host: 127.0.0.1, port: 8443, server_name: example.internal,
             ca_file: certs/ca.pem, min_days_left: 30, verify: false}
    """), {})

    site, other = config.check("site"), config.check("other")
    assert isinstance(site, TlsCheckConfig) and isinstance(other, TlsCheckConfig)
    assert (site.port, site.server_name, site.ca_file, site.min_days_left, site.verify) == (443, None, None, 14, True)
    assert (other.port, other.server_name, other.min_days_left, other.verify) == (8443, "example.internal", 30, False)
    assert other.ca_file == str(tmp_path / "certs" / "ca.pem")  # relative to the config file


def test_a_bad_ca_file_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    (tmp_path / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n")
    path = write_config(tmp_path, """\
        checks:
          - {name: a, type: tls, host: h, ca_file: missing.pem}
          - {name: b, type: http, url: "https://h/", ca_file: folder}
          - {name: c, type: tls, host: h, ca_file: notes.txt}
          - {name: d, type: tls, host: h, ca_file: broken.pem}
          - {name: e, type: tls, host: h, min_days_left: -1}
          - {name: f, type: tls, host: h, min_days_left: true}
          - {name: g, type: tcp, host: h, port: 1, ca_file: x.pem}
    """)

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    assert caught.value.errors == [
        f"checks[0].ca_file: no such file: {tmp_path / 'missing.pem'}",
        f"checks[1].ca_file: {tmp_path / 'folder'} is a folder, not a file of certificates",
        f"checks[2].ca_file: {tmp_path / 'notes.txt'} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        caught.value.errors[3],
        "checks[4].min_days_left: must be between 0 and 36500 days, got -1",
        "checks[5].min_days_left: expected a number of days, not true/false",
        "checks[6].ca_file: unknown key for a tcp check (only http, tls checks have it)",
    ]
    assert caught.value.errors[3].startswith(f"checks[3].ca_file: {tmp_path / 'broken.pem'} holds a PEM certificate "
                                             "that cannot be read (")


def test_an_unreadable_ca_file_is_a_located_error(tmp_path: Path, ca_file: Path) -> None:
    locked = tmp_path / "locked.pem"
    shutil.copy(ca_file, locked)
    locked.chmod(0)
    try:
        with locked.open("rb"):
            pass
    except PermissionError:
        pass
    else:  # root reads anything: nothing to test then
        pytest.skip("running as a user that can read any file")
    path = write_config(tmp_path, "checks: [{name: a, type: tls, host: h, ca_file: locked.pem}]\n")
    try:
        with pytest.raises(ConfigError) as caught:
            load_config(path, {})
    finally:
        locked.chmod(0o600)

    assert caught.value.errors == [f"checks[0].ca_file: cannot read {locked}: permission denied"]


def test_reading_a_certificates_dates_is_cheap(ca: trustme.CA) -> None:
    der = ssl.PEM_cert_to_DER_cert(leaf(ca).cert_chain_pems[0].bytes().decode())
    started = time.perf_counter()
    for _ in range(1000):
        read_dates(der)
    per_read = (time.perf_counter() - started) / 1000

    print(f"read_dates: {per_read * 1e6:.1f} µs per certificate")  # measured, not asserted (no timed tests)
    assert read_dates(der).not_after > read_dates(der).not_before
