"""Send each event as an e-mail through an SMTP server (STARTTLS, implicit TLS or plain).

``render`` builds the whole RFC 5322 message with the standard library, purely: the subject is the
message's first line, a plain-text part and an HTML part (every outside string escaped) say the
same, and the evidence bundle is attached as ``evidence-<incident id>.json``. Its ``Date`` is when
the event happened and its ``Message-ID`` is made from the event id, so the bytes are the same on
every retry and a receiving server can drop a duplicate. ``send`` makes one SMTP session with
``aiosmtplib``, imported there, so an agent without an e-mail channel never loads it.

Answers are classified as SMTP means them: a 4xx reply is transient (retry), a 5xx reply is
permanent (dead), authentication refused (535) is dead, no connection or a timeout is retried.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from msgspec.structs import force_setattr

from actions.notifiers.base import Delivery, HttpSessionFactory, Notifier
from actions.notifiers.message import Message, build_message
from agent import payload
from agent.config import NotifierConfigBase
from agent.config.model import field
from agent.config.types import After, Before, NonEmptyStr, Port, Secret, empty_is_none, lower
from agent.durations import format_duration
from agent.neterrors import describe_os_error
from agent.redact import value_masker

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import Notification

__all__ = ["DEFAULT_PORTS", "EmailNotifier", "EmailNotifierConfig", "render_email"]

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DETAIL_CHARS = 200
SUBJECT_CHARS = 200
# What a mailbox is made of, once a display name is taken off: no spaces, no controls, one @.
_MAILBOX = re.compile(r"[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+\.?[^\s@<>()\[\],;:\"\\]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _address(value: str) -> str:
    """An address as written (``ops@example.com`` or ``Ops <ops@example.com>``), checked."""
    if _CONTROL.search(value):
        raise ValueError("an address must not contain a line break or another control character")
    text = value.strip()
    _name, mailbox = parseaddr(text)
    # parseaddr forgives a lot (it takes the first of "a@x, b@y"): the whole text must be the address.
    whole = text == mailbox or (text.endswith(f"<{mailbox}>") and "," not in text and text.count("<") == 1)
    if not (whole and _MAILBOX.fullmatch(mailbox)):
        raise ValueError(f"invalid e-mail address {text!r} (expected name@example.com or 'Name <name@example.com>')")
    return text


def _addresses(value: Any) -> Any:
    if isinstance(value, str):  # one address written without a list
        return [value]
    return value


def _one_or_more(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must list at least 1 address")
    return value


EmailAddress = Annotated[str, After(_address)]


class EmailNotifierConfig(NotifierConfigBase):
    """Send each event as an e-mail through an SMTP server."""

    type: Literal["email"]
    host: NonEmptyStr
    port: Port | None = None  # filled in by security: 587, 465 or 25
    security: Annotated[Literal["starttls", "ssl", "none"], Before(lower)] = "starttls"
    username: Annotated[str | None, Before(empty_is_none)] = None
    password: Annotated[str | None, Before(empty_is_none), Secret] = None
    sender: EmailAddress = field(name="from")
    to: Annotated[list[EmailAddress], Before(_addresses), After(_one_or_more)]
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if self.port is None:
            force_setattr(self, "port", DEFAULT_PORTS[self.security])
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")

    @property
    def envelope_from(self) -> str:
        return parseaddr(self.sender)[1]

    @property
    def envelope_to(self) -> list[str]:
        return [parseaddr(item)[1] for item in self.to]


class EmailNotifier(Notifier[EmailNotifierConfig]):
    """Send each event as one e-mail to ``config.to`` through ``config.host``."""

    type: ClassVar[str] = "email"
    config_model = EmailNotifierConfig
    needs = frozenset()
    config: EmailNotifierConfig

    def __init__(self, config: EmailNotifierConfig, http: HttpSessionFactory) -> None:
        super().__init__(config, http)
        from agent.plugins import secret_values

        self._mask = value_masker(secret_values(config))

    def render(self, notification: Notification) -> bytes:
        return render_email(notification, sender=self.config.sender, to=self.config.to)

    def redact(self, text: str) -> str:
        """``text`` masked and flattened to one line of at most 200 characters, for a detail."""
        return self._mask(" ".join(text.split()))[:DETAIL_CHARS]

    async def send(self, event_id: str, body: bytes) -> Delivery:
        try:
            return await self._attempt(body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the outbox needs a verdict, never an exception
            return self._classify_error(exc)

    async def _attempt(self, body: bytes) -> Delivery:
        import aiosmtplib  # here, not at import: an agent without e-mail never loads it

        config = self.config
        timeout = float(config.timeout)
        async with asyncio.timeout(timeout):  # the whole session, however slowly the server talks
            refused, reply = await aiosmtplib.send(
                body,
                sender=config.envelope_from,
                recipients=config.envelope_to,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.security == "ssl",
                start_tls=config.security == "starttls",  # required, never silently skipped
                validate_certs=config.verify_tls,
                timeout=timeout,
            )
        if refused:
            # Some recipients took it. A 4xx refusal may pass later: send again (the others may get
            # it twice, which at-least-once allows); a 5xx one never will, so the rest is delivered.
            codes = {address: answer.code for address, answer in refused.items()}
            detail = self.redact("refused " + ", ".join(f"{a} ({c} {refused[a].message})" for a, c in codes.items()))
            if any(400 <= code < 500 for code in codes.values()):
                return Delivery("retry", detail)
            delivered = len(config.to) - len(refused)
            return Delivery("delivered", self.redact(f"sent to {delivered} of {len(config.to)}; {detail}"))
        return Delivery("delivered", self.redact(f"sent to {len(config.to)}: {reply}"))

    def _classify_error(self, exc: Exception) -> Delivery:
        import aiosmtplib

        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [item.code for item in exc.recipients]
            detail = self.redact(
                "every recipient refused: " + ", ".join(f"{i.recipient} ({i.code} {i.message})" for i in exc.recipients)
            )
            return Delivery("retry" if any(400 <= c < 500 for c in codes) else "dead", detail)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return self._classify_reply(exc)
        if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
            return Delivery("retry", f"timed out after {format_duration(self.config.timeout)}")
        if isinstance(exc, aiosmtplib.SMTPConnectError):
            cause = exc.__cause__
            if isinstance(cause, OSError):
                return Delivery("retry", self.redact(describe_os_error(cause)))
            return Delivery("retry", self.redact(f"cannot connect: {exc}"))
        if isinstance(exc, aiosmtplib.SMTPNotSupported) or "not supported by server" in str(exc):
            # The server does not offer what the config requires (STARTTLS, AUTH): a setting to fix.
            return Delivery("dead", self.redact(f"not supported by the server: {exc}"))
        if isinstance(exc, (aiosmtplib.SMTPException, OSError)):
            return Delivery("retry", self.redact(f"{type(exc).__name__}: {exc}"))
        return Delivery("retry", self.redact(f"unexpected error: {type(exc).__name__}: {exc}"))

    def _classify_reply(self, exc: Any) -> Delivery:
        code = int(exc.code)
        stage = {
            "SMTPAuthenticationError": "authentication",
            "SMTPSenderRefused": "sender",
            "SMTPDataError": "message",
            "SMTPHeloError": "greeting",
        }.get(type(exc).__name__, "reply")
        detail = self.redact(f"SMTP {code} ({stage}): {exc.message}")
        if 400 <= code < 500:
            return Delivery("retry", detail, status=code)
        if 500 <= code < 600:
            return Delivery("dead", detail, status=code)
        return Delivery("retry", detail, status=code)  # a reply outside the protocol: the server is unwell


# --- the message: built once, purely ------------------------------------------------------------


def render_email(notification: Notification, *, sender: str, to: list[str]) -> bytes:
    """The whole message (headers, both parts, the evidence attached) as CRLF bytes."""
    event = notification.event
    message = build_message(notification)
    domain = _domain(sender)
    mail = EmailMessage(policy=SMTP)
    mail["Subject"] = _one_line(message.first_line, SUBJECT_CHARS)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = format_datetime(datetime.fromtimestamp(event.occurred_at, UTC))
    mail["Message-ID"] = f"<{_id_part(event.id)}@{domain}>"
    # Every event of one incident refers to the same root, so mail clients show them as one thread.
    mail["References"] = f"<{_id_part(event.incident_id)}@{domain}>"
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to an alert
    mail["X-Lifeguard-Event"] = event.kind
    mail["X-Lifeguard-Incident"] = _id_part(event.incident_id)
    # Quoted-printable: '=' is always encoded, so no text from outside can reproduce a boundary.
    mail.set_content(_clean(message.text()) + "\n", cte="quoted-printable")
    mail.add_alternative(_html(message), subtype="html", cte="quoted-printable")
    evidence = payload.event_document(notification)["evidence"]
    attachment = json.dumps(evidence, indent=2, ensure_ascii=False, default=str).encode("utf-8", "replace")
    mail.add_attachment(
        attachment, maintype="application", subtype="json", filename=f"evidence-{_id_part(event.incident_id)}.json"
    )
    # Boundaries are random by default; made from the event id, the bytes are the same every time.
    mail.set_boundary(f"=_lifeguard_mixed_{_id_part(event.id)}")
    for part in mail.iter_parts():
        if part.get_content_type() == "multipart/alternative":
            part.set_boundary(f"=_lifeguard_alt_{_id_part(event.id)}")
    for part in mail.walk():
        if part is not mail:
            del part["MIME-Version"]  # the stdlib repeats it on parts; it belongs on the message only
    return mail.as_bytes()


def _html(message: Message) -> str:
    def esc(text: str) -> str:
        return html.escape(_clean(text), quote=True)

    rows = "".join(f'<tr><th align="left">{esc(key)}</th><td>{esc(value)}</td></tr>\n' for key, value in message.facts)
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head><body>',
        f"<h2>{esc(message.first_line)}</h2>",
        f"<table>\n{rows}</table>",
    ]
    if message.last_error:
        out.append(f"<p><b>Last error:</b> {esc(message.last_error)}</p>")
    if message.container_state:
        out.append(f"<p><b>Container state:</b> {esc(message.container_state)}</p>")
    if message.log_lines:
        lines = "\n".join(esc(line) for line in message.log_lines)
        out.append(f"<p><b>Last log lines:</b></p>\n<pre>{lines}</pre>")
    if message.evidence_url:
        out.append(f'<p><a href="{esc(message.evidence_url)}">Evidence</a></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _one_line(text: str, chars: int) -> str:
    flat = " ".join(_clean(text).split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


def _clean(text: str) -> str:
    """``text`` without what would break a message: lone surrogates, NULs and other controls but tab/newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "\ufffd", text)


def _id_part(value: str) -> str:
    # Event and incident ids are ``evt_…`` / ``inc_…``; anything else is kept to the safe characters.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value) or "_"


def _domain(sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2]
    return re.sub(r"[^A-Za-z0-9.-]", "", domain) or "lifeguard.invalid"
