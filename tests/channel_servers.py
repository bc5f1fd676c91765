"""Local stand-ins for Telegram's Bot API and an SMTP server, for the channel tests.

``TelegramServer`` is a real aiohttp server on 127.0.0.1 that answers as the Bot API does (its
success, ``chat not found``, ``Unauthorized``, ``Too Many Requests`` with ``retry_after``), and
parses a message's HTML strictly, as Telegram does, so a stray ``<`` or an unknown tag is refused
with ``can't parse entities``. ``SmtpServer`` is aiosmtpd on 127.0.0.1 in its own thread, plain,
STARTTLS or implicit TLS, recording every accepted message and answering as a test scripts it.
"""

from __future__ import annotations

import html
import json
import re
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web

from tests.fixtures_agent import LocalServer, free_port

BOT_TOKEN = "7012345678:AAHk3ymustNeverLeakAnywhere_x9Q2-zZ"
CHAT_ID = -1001234567890

# --- Telegram -----------------------------------------------------------------------------------

_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote"}
_TAG = re.compile(r'<(/?)([a-z-]+)((?:\s+[a-z-]+="[^"<>]*")*)\s*>')
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")


class ParseError(ValueError):
    pass


def parse_telegram_html(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Telegram's HTML parse mode, strictly: the plain text and the (tag, text) entities it makes."""
    plain: list[str] = []
    stack: list[tuple[str, int]] = []
    entities: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "<":
            m = _TAG.match(text, i)
            if not m:
                raise ParseError(f"Unsupported start tag at byte offset {i}")
            closing, tag = m.group(1) == "/", m.group(2)
            if tag not in _ALLOWED_TAGS:
                raise ParseError(f'Unsupported start tag "{tag}" at byte offset {i}')
            if closing:
                if not stack or stack[-1][0] != tag:
                    raise ParseError(f'Unmatched end tag at byte offset {i}, expected "</{stack[-1][0] if stack else ""}>"')
                _, start = stack.pop()
                entities.append((tag, "".join(plain)[start:]))
            else:
                stack.append((tag, len("".join(plain))))
            i = m.end()
        elif ch == "&":
            m = _ENTITY.match(text, i)
            if not m:
                raise ParseError(f"Unsupported entity at byte offset {i}")
            plain.append(html.unescape(m.group(0)))
            i = m.end()
        elif ch == ">":
            raise ParseError(f"Unexpected end tag character at byte offset {i}")
        else:
            plain.append(ch)
            i += 1
    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(plain), entities


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Sent:
    body: dict[str, Any]
    plain: str
    entities: list[tuple[str, str]]


class TelegramServer(LocalServer):
    """The Bot API's ``sendMessage`` for one bot and its chats, answering as Telegram does."""

    def __init__(self, token: str = BOT_TOKEN, chats: tuple[int | str, ...] = (CHAT_ID,)) -> None:
        super().__init__()
        self.token = token
        self.chats = set(chats)
        self.sent: list[Sent] = []  # accepted messages, in order
        self.requests: list[tuple[str, dict[str, str], bytes]] = []  # (path, headers, body) of every request
        self.script: list[tuple[int, dict[str, Any] | str]] = []  # answers to give first, one per request

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append((request.path, dict(request.headers), raw))
        if self.script:
            status, answer = self.script.pop(0)
            if isinstance(answer, str):
                return web.Response(status=status, text=answer, content_type="text/html")
            return web.json_response(answer, status=status)
        if not request.path.startswith("/bot") or not request.path.endswith("/sendMessage"):
            return _error(404, "Not Found")
        if request.path != f"/bot{self.token}/sendMessage":
            return _error(401, "Unauthorized")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "Bad Request: message text is empty")
        if body.get("chat_id") not in self.chats:
            return _error(400, "Bad Request: chat not found")
        text = body.get("text") or ""
        try:
            plain, entities = parse_telegram_html(text) if body.get("parse_mode") == "HTML" else (text, [])
        except ParseError as exc:
            return _error(400, f"Bad Request: can't parse entities: {exc}")
        if not plain.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16_len(plain) > 4096:
            return _error(400, "Bad Request: message is too long")
        self.sent.append(Sent(body, plain, entities))
        result = {"message_id": len(self.sent), "chat": {"id": body["chat_id"]}, "date": 1763953962, "text": plain}
        return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, **parameters: Any) -> web.Response:
    answer: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return web.json_response(answer, status=status)


def too_many_requests(retry_after: int) -> tuple[int, dict[str, Any]]:
    return 429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry_after}",
                 "parameters": {"retry_after": retry_after}}


# --- SMTP ---------------------------------------------------------------------------------------


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpHandler:
    """aiosmtpd's handler: keeps what it accepts; ``data_replies`` / ``refuse`` script its answers."""

    mails: list[Mail] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)  # answers to DATA before "250 OK"
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> its RCPT answer
    sessions: int = 0
    tls: list[bool] = field(default_factory=list)  # per DATA: was the session encrypted

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # STARTTLS fills session.ssl; an implicit-TLS connection shows in the transport.
        self.tls.append(session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None)
        if self.data_replies:
            return self.data_replies.pop(0)
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 OK: queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (its own thread): ``mode`` is ``none``, ``starttls`` or ``ssl``."""

    def __init__(
        self,
        mode: str = "none",
        server_context: ssl.SSLContext | None = None,
        logins: dict[str, str] | None = None,
    ) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.handler = SmtpHandler()
        self.port = free_port()
        self.logins = logins

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and logins is not None and (
                logins.get(auth_data.login.decode()) == auth_data.password.decode())
            return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself

        kwargs: dict[str, Any] = {}
        if logins is not None:
            kwargs |= {"authenticator": authenticate, "auth_required": mode != "none", "auth_require_tls": mode != "none"}
        if mode == "starttls":
            kwargs |= {"tls_context": server_context, "require_starttls": True}
        elif mode == "ssl":
            kwargs |= {"ssl_context": server_context}
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails
