"""The one interface every notifier implements, and the outcome of one delivery attempt.

A notifier renders an event (a ``Notification``: the event as data, its evidence, its link)
into its own request body with ``render``, a pure function with golden tests, and sends that
body with ``send``. The outbox renders once, at the first attempt, and keeps the bytes, so
every retry sends the same body.

The outbox owns durability: it stores each event, decides when to try again and in what
order, and gives up after ``give_up_after``. A notifier makes exactly one attempt per
``send()`` and says what happened, in three words the outbox acts on: ``delivered``,
``retry`` (a transient failure: try again later), ``dead`` (retrying cannot help). So a
notifier never retries, never sleeps and never raises; it knows nothing of checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar

from agent.config import NotifierConfigBase
from agent.config.types import ConfigModel, is_secret

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

    from agent.events import Notification, OpenIncident

DeliveryOutcome = Literal["delivered", "retry", "dead"]
HttpSessionFactory = Callable[[], "aiohttp.ClientSession"]


def repr_without(config: ConfigModel, *hidden: str) -> str:
    """``config``'s repr without its ``hidden`` fields (nor its secrets, as every repr): for a value
    that may carry a credential (a URL's user and password) but is not a ``Secret`` everywhere."""
    specs = type(config).model_fields
    shown = ", ".join(
        f"{name}={getattr(config, name)!r}"
        for name, spec in specs.items()
        if name not in hidden and not is_secret(spec)
    )
    return f"{type(config).__name__}({shown})"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one attempt to deliver one event came to."""

    outcome: DeliveryOutcome
    detail: str  # short and free of secrets: "HTTP 200", "connection refused", "timed out after 10s"
    status: int | None = None  # the HTTP status, when there was a response
    retry_after: float | None = None  # seconds the receiver asked us to wait (Retry-After)


# Covariant: a ``WebhookNotifier`` (a ``Notifier[WebhookNotifierConfig]``) is a ``Notifier[NotifierConfigBase]``.
ConfigT = TypeVar("ConfigT", bound=NotifierConfigBase, covariant=True)


class Notifier(Generic[ConfigT]):
    """Base of every notifier. Subclasses set the class variables and implement ``render`` and ``send``."""

    config_model: ClassVar[type[NotifierConfigBase]]  # validates its entry in ``notifiers:``
    needs: ClassVar[frozenset[str]] = frozenset()  # "http": it uses the shared client session
    type: ClassVar[str]

    def __init__(self, config: ConfigT, http: HttpSessionFactory) -> None:
        # ``http`` is a factory, not a session: the caller creates the shared session lazily,
        # so a file-only set-up never builds an HTTP client.
        self.config = config
        self._http = http

    @property
    def name(self) -> str:
        return self.config.name

    def render(self, notification: Notification) -> bytes:
        """The request body for one event: pure (no I/O, no clock), so its bytes are tested exactly."""
        raise NotImplementedError

    async def send(self, event_id: str, body: bytes) -> Delivery:
        """Make one attempt to deliver ``body`` (what ``render`` made at the first attempt).

        Must not raise, except ``asyncio.CancelledError``: every failure is a ``Delivery``.
        """
        raise NotImplementedError

    async def resume(self, open_incidents: Sequence[OpenIncident]) -> None:
        """Pick up the incidents open when the outbox starts: called once, before its first delivery.

        For a channel whose service forgets what it is not told again (Alertmanager resolves an
        alert nobody re-posts), so an incident open before a restart stays open there after it.
        Most channels keep nothing at their service and leave this as it is: it does nothing.
        """

    async def close(self) -> None:
        """Release what the notifier holds itself (the shared HTTP session is not its own)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"



AnyNotifier = Notifier[NotifierConfigBase]
"""A notifier of any type, as the outbox holds them."""
