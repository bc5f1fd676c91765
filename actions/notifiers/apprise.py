"""Deliver events through the Apprise library: ntfy, Gotify, Matrix, Pushover and the long tail.

Apprise (an optional extra: ``pip install 'lifeguard[apprise]'``) speaks to some hundred services
from one URL each (``ntfy://…``, ``gotify://…``, ``json://…``). It is a blocking library, so every
send runs on this notifier's own thread, never on the event loop nor in the default executor (DNS
lookups use that). It is imported only when a config names ``type: apprise``; without it, that
config is an error saying how to install it.

The message is the one every channel shows: its first line as the title, ``Message.text()`` as
the body. Apprise says only whether a send worked, not why it failed in a way that could tell a
lasting refusal from a passing one, so a failed send is retried and the outbox's
``give_up_after`` bounds it. Details never echo the URLs: they carry the services' tokens.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from actions.notifiers.base import Delivery, HttpSessionFactory, Notifier
from actions.notifiers.message import build_message
from agent.config import NotifierConfigBase
from agent.config.types import After, Secret
from agent.durations import format_duration
from agent.redact import url_secrets, value_masker

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import Notification

INSTALL_HINT = "pip install 'lifeguard[apprise]'"
DETAIL_CHARS = 200
# Any run this long after the scheme is a credential: a Telegram bot token sits in the host part,
# a Gotify or ntfy token in the path.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-]{16,}")


def load_apprise() -> Any:
    """The Apprise module, or ``ImportError`` with the way to install it."""
    try:
        import apprise
    except ImportError:
        raise ImportError(f"the Apprise library is not installed: {INSTALL_HINT}") from None
    return apprise


def _library_installed(value: str) -> str:
    try:
        load_apprise()
    except ImportError:
        raise ValueError(f"needs the Apprise library, which is not installed; {INSTALL_HINT}") from None
    return value


def _apprise_urls(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must list at least one Apprise URL")
    try:
        apprise = load_apprise()
    except ImportError:
        return value  # reported once, at `type`
    for i, url in enumerate(value):
        # Never echoed: an Apprise URL is a credential, even a malformed one.
        if not url.strip():
            raise ValueError(f"URL {i + 1} is empty")
        if not apprise.Apprise().add(url):
            raise ValueError(
                f"URL {i + 1} is not one Apprise understands (the value is not shown; "
                "see the Apprise wiki for each service's URL)"
            )
    return value


class AppriseNotifierConfig(NotifierConfigBase):
    """Send each event through Apprise to one or more services, each named by an Apprise URL."""

    type: Annotated[Literal["apprise"], After(_library_installed)]
    urls: Annotated[list[str], Secret, After(_apprise_urls)]  # each URL carries its service's token


class AppriseNotifier(Notifier[AppriseNotifierConfig]):
    """Send the message's first line as the title and its text as the body to every URL."""

    type: ClassVar[str] = "apprise"
    config_model = AppriseNotifierConfig
    needs = frozenset()
    config: AppriseNotifierConfig

    def __init__(self, config: AppriseNotifierConfig, http: HttpSessionFactory) -> None:
        super().__init__(config, http)
        self._mask = value_masker(self.private_values())
        self._sender: ThreadPoolExecutor | None = None
        self._apprise: Any = None  # built on the sender's thread at the first send

    def private_values(self) -> list[str]:
        """Each URL, its credentials, and every token-like run in it: none may reach a detail."""
        found: list[str] = []
        for url in self.config.urls:
            found += [url, *url_secrets(url), *_TOKEN_RUN.findall(url.partition("://")[2])]
        return list(dict.fromkeys(found))

    def render(self, notification: Notification) -> bytes:
        return render_json(notification)

    async def send(self, event_id: str, body: bytes) -> Delivery:
        try:
            message = json.loads(body)
            title, text = str(message["title"]), str(message["body"])
        except (ValueError, KeyError, TypeError):  # the same body would fail the same way every time
            return Delivery("dead", "body is not an Apprise message")
        if self._sender is None:
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lifeguard-apprise-{self.name}")
        timeout = float(self.config.timeout)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout + 1.0):  # Apprise bounds the call itself; this is the backstop
                return await loop.run_in_executor(self._sender, self._notify, title, text, timeout)
        except TimeoutError:
            return Delivery("retry", f"timed out after {format_duration(timeout)}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the outbox needs a verdict, never an exception
            return Delivery("retry", self._detail(f"unexpected error: {type(exc).__name__}: {exc}"))

    def _notify(self, title: str, text: str, timeout: float) -> Delivery:
        """One send, on the sender's thread."""
        if self._apprise is None:
            apprise = load_apprise()
            services = apprise.Apprise()
            for i, url in enumerate(self.config.urls):
                if not services.add(url):
                    return Delivery("dead", f"URL {i + 1} is not one Apprise understands")
            self._apprise = services
        try:
            result = self._apprise.notify(body=text, title=title, body_format="text", timeout=timeout)
        except TypeError:  # an Apprise before 1.9 has no `timeout`
            result = self._apprise.notify(body=text, title=title, body_format="text")
        if result:
            return Delivery("delivered", f"sent to {_plural(len(self.config.urls), 'service')}")
        said = [str(entry.message) for entry in _logs(result)]
        detail = "Apprise could not send"
        if said:
            detail += f": {said[-1]}"
        return Delivery("retry", self._detail(detail))

    def _detail(self, text: str) -> str:
        # Masked before it is cut, so a URL cut in half at the limit cannot slip through.
        return self._mask(" ".join(text.split()))[:DETAIL_CHARS]

    async def close(self) -> None:
        if self._sender is not None:
            sender, self._sender = self._sender, None
            await asyncio.to_thread(sender.shutdown, wait=False, cancel_futures=True)


def render_json(notification: Notification) -> bytes:
    """What is sent: ``{"title": first line, "body": the message as plain text}``."""
    message = build_message(notification)
    return json.dumps({"title": message.first_line, "body": message.text()}, ensure_ascii=False).encode()


def _logs(result: Any) -> list[Any]:
    """What Apprise logged during the call (Apprise 2.x keeps it on the result; older ones do not)."""
    logs = getattr(result, "logs", None)
    if not callable(logs):
        return []
    try:
        return [entry for entry in logs() if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL")]
    except Exception:  # noqa: BLE001 - a detail is a nicety; the verdict stands without it
        return []


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
