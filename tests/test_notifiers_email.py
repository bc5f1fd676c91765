"""The e-mail channel: its exact bytes, and SMTP against a real local server (plain, STARTTLS, TLS)."""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from actions.notifiers import NOTIFIER_TYPES, build_notifier
from actions.notifiers.base import Delivery
from actions.notifiers.email import EmailNotifier, EmailNotifierConfig
from agent.config.model import Invalid
from agent.events import Notification
from tests.channel_servers import SmtpServer
from tests.fixtures_agent import free_port
from tests.test_notifiers_telegram import HOSTILE, hostile_notification, with_container
from tests.test_payload import check_golden, notification  # noqa: F401 - the golden event, a fixture

PASSWORD = "pa55-that-must-never-show"


def config(port: int | None, /, **overrides: Any) -> EmailNotifierConfig:
    fields = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": port, "security": "none",
              "from": "Lifeguard <lifeguard@example.com>", "to": ["ops@example.com", "Oncall <oncall@example.com>"],
              "timeout": "5s"}
    return EmailNotifierConfig.model_validate(fields | overrides)


def mailer(port: int, **overrides: Any) -> EmailNotifier:
    return EmailNotifier(config(port, **overrides), lambda: None)  # type: ignore[arg-type, return-value]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    """The test CA is the one the client trusts (OpenSSL reads SSL_CERT_FILE for its default store)."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return ca


def parts(message: EmailMessage) -> tuple[str, str, dict[str, Any], str]:
    """The plain text, the HTML, the attachment parsed as JSON and its file name."""
    plain = message.get_body(("plain",))
    markup = message.get_body(("html",))
    [attachment] = list(message.iter_attachments())
    assert plain is not None and markup is not None
    data = attachment.get_content()
    text, page = (part.get_content().replace("\r\n", "\n") for part in (plain, markup))
    return text, page, json.loads(data), attachment.get_filename() or ""


# --- render: the exact bytes --------------------------------------------------------------------


def test_the_message_is_the_golden_bytes(notification: Notification) -> None:  # noqa: F811
    n = with_container(notification, ["starting worker 1", "ERROR db: connection refused <pg:5432> & retrying"])
    body = mailer(25).render(n)
    check_golden("incident-opened.email.eml", body)
    assert body == mailer(25).render(n)  # pure: the same event, the same bytes
    assert b"\r\n" in body and b"\n" not in body.replace(b"\r\n", b"")
    message = message_from_bytes(body, policy=policy.default)
    assert message["Subject"] == "[SEV-1][OPENED] api failing: HTTP 500"
    assert message["Message-ID"] == "<evt_019ab5d2c7e84f1a9c3b2d10@example.com>"
    assert message["References"] == "<inc_019ab5d2c7e8a1b2c3d4e5f6@example.com>"
    assert message["Date"] == "Mon, 24 Nov 2025 03:12:42 +0000"
    assert message["To"] == "ops@example.com, Oncall <oncall@example.com>"
    text, markup, evidence, filename = parts(message)
    assert text == build_text(n) + "\n"
    assert "<pre>starting worker 1\nERROR db: connection refused &lt;pg:5432&gt; &amp; retrying</pre>" in markup
    assert filename == "evidence-inc_019ab5d2c7e8a1b2c3d4e5f6.json"
    assert evidence["phase"] == "opened" and evidence["response"]["body"] == "boom — ünïcode"
    assert evidence["url"].endswith("/evidence")


def build_text(n: Notification) -> str:
    from actions.notifiers.message import build_message

    return build_message(n).text()


def test_markup_and_header_injection_stay_text() -> None:
    evil = HOSTILE + "\r\nBcc: thief@evil.example\r\n\r\n--=_lifeguard_mixed_evt_1\r\n"
    body = mailer(25).render(hostile_notification(evil))
    message = message_from_bytes(body, policy=policy.default)
    assert message["Bcc"] is None and len(list(message.walk())) == 5  # mixed, alternative, plain, html, json
    assert "\n" not in message["Subject"] and message["Subject"].startswith("[SEV-1][OPENED] api failing: <b>bold</b>")
    text, markup, evidence, _ = parts(message)  # type: ignore[arg-type]
    assert HOSTILE in text
    assert "<b>bold</b>" not in markup and "&lt;b&gt;bold&lt;/b&gt; *star* `tick` @channel &lt;/code&gt;" in markup
    assert "<script>" not in markup and "<a href=\"x\">" not in markup
    assert evidence["checks"][0]["message"].startswith("HTTP 500: <b>bold</b>")


def test_a_long_subject_is_cut_to_one_line() -> None:
    body = mailer(25).render(hostile_notification("x" * 5000))
    subject = message_from_bytes(body, policy=policy.default)["Subject"]
    assert len(subject) == 200 and subject.endswith("…")


# --- config ---------------------------------------------------------------------------------------


def test_ports_follow_security_and_keys_read_as_written() -> None:
    base = {"name": "m", "type": "email", "host": "smtp.example.com", "from": "lg@example.com", "to": "ops@example.com"}
    assert EmailNotifierConfig.model_validate(base).port == 587
    assert EmailNotifierConfig.model_validate(base | {"security": "SSL"}).port == 465
    assert EmailNotifierConfig.model_validate(base | {"security": "none"}).port == 25
    c = EmailNotifierConfig.model_validate(base | {"port": 2525, "username": "lg", "password": PASSWORD})
    assert c.port == 2525 and c.to == ["ops@example.com"] and c.verify_tls is True and PASSWORD not in repr(c)
    assert "from" in EmailNotifierConfig.yaml_keys({}) and "sender" not in EmailNotifierConfig.yaml_keys({})
    assert NOTIFIER_TYPES["email"] is EmailNotifier
    assert isinstance(build_notifier(c, lambda: None), EmailNotifier)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize(("bad", "where"), [
    ({"to": ["ops"]}, "to[0]"), ({"to": []}, "to"), ({"to": ["a@example.com, b@example.com"]}, "to[0]"),
    ({"to": ["a@example.com\r\nBcc: x@example.com"]}, "to[0]"), ({"from": "nobody"}, "from"),
    ({"username": "u"}, "username and password"), ({"security": "tls"}, "security"), ({"port": 0}, "port"),
    ({"sender": "lg@example.com"}, "sender"),
])
def test_config_mistakes_are_refused(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(Invalid) as info:
        config(25, **bad)
    assert where in str(info.value)


def test_aiosmtplib_is_loaded_only_to_send() -> None:
    import subprocess

    code = "import sys, actions.notifiers, agent.daemon; print('aiosmtplib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- send: a real SMTP server -------------------------------------------------------------------


async def test_delivered_plain_with_subject_both_parts_and_the_attachment(smtp: SmtpServer, notification: Notification) -> None:  # noqa: F811
    m = mailer(smtp.port)
    body = m.render(replace(notification, evidence_public=True))
    delivery = await m.send("evt_1", body)
    assert delivery.outcome == "delivered" and delivery.detail.startswith("sent to 2")
    [mail] = smtp.mails
    assert mail.sender == "lifeguard@example.com"
    assert mail.recipients == ["ops@example.com", "oncall@example.com"]
    assert mail.data == body
    message = mail.message
    assert message["Subject"] == "[SEV-1][OPENED] api failing: HTTP 500"
    text, markup, evidence, filename = parts(message)
    assert text.startswith("[SEV-1][OPENED] api failing: HTTP 500\n") and "Evidence: http://127.0.0.1:9810/" in text
    assert "<h2>[SEV-1][OPENED] api failing: HTTP 500</h2>" in markup and '<a href="http://127.0.0.1:9810/' in markup
    assert filename == "evidence-inc_019ab5d2c7e8a1b2c3d4e5f6.json" and evidence["checks"][0]["message"] == "HTTP 500"


async def test_starttls_with_a_certificate_made_here(trusted: trustme.CA, notification: Notification) -> None:  # noqa: F811
    server = SmtpServer("starttls", server_context(trusted), logins={"lg": PASSWORD}).start()
    try:
        m = mailer(server.port, security="starttls", username="lg", password=PASSWORD)
        delivery = await m.send("evt_1", m.render(notification))
        assert delivery.outcome == "delivered", delivery
        assert server.handler.tls == [True] and len(server.mails) == 1
        assert parts(server.mails[0].message)[3] == "evidence-inc_019ab5d2c7e8a1b2c3d4e5f6.json"
    finally:
        server.stop()


async def test_implicit_tls(trusted: trustme.CA, notification: Notification) -> None:  # noqa: F811
    server = SmtpServer("ssl", server_context(trusted)).start()
    try:
        m = mailer(server.port, security="ssl")
        assert (await m.send("evt_1", m.render(notification))).outcome == "delivered"
        assert server.handler.tls == [True]
    finally:
        server.stop()


async def test_an_untrusted_certificate_is_not_accepted_unless_verify_tls_is_off(ca: trustme.CA) -> None:
    server = SmtpServer("starttls", server_context(ca)).start()  # a CA the client does not trust
    try:
        delivery = await mailer(server.port, security="starttls").send("evt_1", b"Subject: x\r\n\r\nx\r\n")
        assert delivery.outcome == "retry" and "certificate" in delivery.detail.lower() and server.mails == []
        lax = mailer(server.port, security="starttls", verify_tls=False)
        assert (await lax.send("evt_1", b"Subject: x\r\n\r\nx\r\n")).outcome == "delivered"
    finally:
        server.stop()


async def test_starttls_required_but_not_offered_is_dead(smtp: SmtpServer) -> None:
    delivery = await mailer(smtp.port, security="starttls").send("evt_1", b"Subject: x\r\n\r\nx\r\n")
    assert delivery.outcome == "dead" and "STARTTLS" in delivery.detail and smtp.mails == []


async def test_a_transient_451_is_retried_then_the_same_bytes_are_delivered(smtp: SmtpServer, notification: Notification) -> None:  # noqa: F811
    smtp.handler.data_replies.append("451 4.3.0 Mail server temporarily rejected message")
    m = mailer(smtp.port)
    body = m.render(notification)
    first = await m.send("evt_1", body)
    assert first == Delivery("retry", "SMTP 451 (message): 4.3.0 Mail server temporarily rejected message", status=451)
    assert smtp.mails == []
    assert (await m.send("evt_1", body)).outcome == "delivered"
    assert [mail.data for mail in smtp.mails] == [body]


async def test_a_permanent_550_is_dead(smtp: SmtpServer) -> None:
    smtp.handler.data_replies.append("550 5.7.1 Message rejected as spam")
    delivery = await mailer(smtp.port).send("evt_1", b"Subject: x\r\n\r\nx\r\n")
    assert delivery == Delivery("dead", "SMTP 550 (message): 5.7.1 Message rejected as spam", status=550)


async def test_recipients_refused(smtp: SmtpServer) -> None:
    smtp.handler.refuse = {"ops@example.com": "550 5.1.1 No such user", "oncall@example.com": "550 5.1.1 No such user"}
    dead = await mailer(smtp.port).send("evt_1", b"Subject: x\r\n\r\nx\r\n")
    assert dead.outcome == "dead" and "every recipient refused" in dead.detail and "ops@example.com (550" in dead.detail
    smtp.handler.refuse = {"ops@example.com": "452 4.2.2 Mailbox full"}
    later = await mailer(smtp.port).send("evt_1", b"Subject: x\r\n\r\nx\r\n")
    assert later.outcome == "retry" and "452" in later.detail
    smtp.handler.refuse = {"ops@example.com": "550 5.1.1 No such user"}
    partly = await mailer(smtp.port).send("evt_1", b"Subject: x\r\n\r\nx\r\n")
    assert partly.outcome == "delivered" and partly.detail.startswith("sent to 1 of 2; refused ops@example.com (550")


async def test_a_wrong_password_is_dead_and_never_shown() -> None:
    server = SmtpServer("none", logins={"lg": "the-right-one"}).start()
    try:
        delivery = await mailer(server.port, username="lg", password=PASSWORD).send("evt_1", b"Subject: x\r\n\r\nx\r\n")
        assert delivery.outcome == "dead" and delivery.status == 535 and "authentication" in delivery.detail
        assert PASSWORD not in delivery.detail and server.mails == []
    finally:
        server.stop()


async def test_a_reply_echoing_the_password_is_masked() -> None:
    server = SmtpServer("none", logins={"lg": PASSWORD}).start()
    try:
        server.handler.data_replies.append(f"554 5.6.0 bad message from user with password {PASSWORD}")
        delivery = await mailer(server.port, username="lg", password=PASSWORD).send("evt_1", b"Subject: x\r\n\r\nx\r\n")
        assert delivery.outcome == "dead" and delivery.status == 554
        assert PASSWORD not in delivery.detail and "[redacted]" in delivery.detail
    finally:
        server.stop()


async def test_connection_refused_is_retried() -> None:
    delivery = await mailer(free_port()).send("evt_1", b"Subject: x\r\n\r\nx\r\n")
    assert delivery.outcome == "retry" and "refused" in delivery.detail


async def test_a_silent_server_times_out_and_is_retried() -> None:
    import socket

    with socket.socket() as listener:  # accepts the connection, never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        m = mailer(listener.getsockname()[1], timeout="300ms")
        delivery = await m.send("evt_1", b"Subject: x\r\n\r\nx\r\n")
    assert delivery == Delivery("retry", "timed out after 300ms")
