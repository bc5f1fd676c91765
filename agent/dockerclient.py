"""The agent's one door to the Docker Engine: its HTTP API, spoken with the aiohttp already loaded.

The Engine API is plain HTTP over a unix socket (or TCP), so the agent talks to it with its own
aiohttp session rather than docker-py, which would bring ``requests`` and its own thread pool
(+6 MB of idle memory for an agent with one container check). ``DockerEngine`` confines the
protocol here: every call is bounded by a timeout, and every lower-layer error is translated into
the ``DockerError`` family, so checks, healers and evidence catch one thing. Nothing blocks: no
thread is needed, and a hung engine ties up only the calls waiting on it. The session reconnects
by itself: a Docker that comes back is picked up at the next call without restarting the agent.

Paths are unversioned (``/containers/{id}/json``): the engine answers in its own current API
version, which is what docker-py's ``version="auto"`` negotiated too, and works with every engine
from Debian's 20.10 on.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

SCHEMES = ("unix", "tcp", "http", "https")
"""The Docker URLs the agent speaks: a unix socket, or the engine's TCP port (plain or TLS)."""

_EVENTS_LINE_LIMIT = 1 << 20  # one decoded event; the engine's are a few hundred bytes
_CONNECT_WAIT = 0.5  # seconds a first call may go unanswered before others fail fast instead of queueing


class DockerError(Exception):
    """Base of every error raised by ``DockerEngine``."""


class DockerUnavailable(DockerError):
    """The Docker engine could not be reached or did not answer in time."""


class ContainerNotFound(DockerError):
    """The engine has no container by that name or id."""


class DockerEngine:
    """Async access to one Docker engine; cheap to build, connects on first use."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        # None until the first call; then whether the last call reached the engine.
        self.reachable: bool | None = None
        # Why the engine was last unreachable; None while it is reachable.
        self.last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        # While a call to an engine not yet known to answer has waited this long (monotonic start),
        # other calls fail fast with the reason rather than each waiting out its own timeout.
        self._unanswered_since: float | None = None
        self._first_answer: asyncio.Future[None] | None = None  # done when that first call ends
        scheme, _, rest = url.partition("://")
        if scheme == "unix":
            self._socket: str | None = rest if rest.startswith("/") else "/" + rest
            self._base = "http://docker"
        else:
            self._socket = None
            self._base = ("https://" if scheme == "https" else "http://") + rest.rstrip("/")
        # Called on the event loop when ``reachable`` changes: (reachable, why not).
        self.on_reachability: Callable[[bool, str | None], None] | None = None

    def __repr__(self) -> str:
        return f"DockerEngine({self.url!r}, reachable={self.reachable})"

    async def ping(self) -> bool:
        """Whether the engine answers; never raises for an unreachable engine."""
        try:
            await self._call("GET", "/_ping")
        except DockerUnavailable:
            return False
        return True

    async def inspect(self, container: str) -> dict[str, Any]:
        """The raw ``docker inspect`` attributes of a container."""
        body = await self._call("GET", f"/containers/{_id(container)}/json", container=container)
        found: dict[str, Any] = json.loads(body)
        return found

    async def logs(self, container: str, tail: int = 200) -> list[str]:
        """The last ``tail`` lines of stdout and stderr, each prefixed with Docker's timestamp."""
        raw = await self._call(
            "GET",
            f"/containers/{_id(container)}/logs",
            params={"stdout": "1", "stderr": "1", "timestamps": "1", "tail": str(tail)},
            container=container,
        )
        return _demultiplex(raw).decode("utf-8", errors="replace").splitlines()

    async def restart(self, container: str, stop_timeout: int = 10) -> None:
        """Restart a container, giving it ``stop_timeout`` seconds to stop before it is killed."""
        await self._call(
            "POST",
            f"/containers/{_id(container)}/restart",
            params={"t": str(stop_timeout)},
            container=container,
            timeout=self.timeout + stop_timeout,
        )

    async def stop(self, container: str, stop_timeout: int = 10) -> None:
        """Stop a container (SIGTERM, then SIGKILL after ``stop_timeout`` seconds); a stopped one stays so."""
        await self._call(
            "POST",
            f"/containers/{_id(container)}/stop",
            params={"t": str(stop_timeout)},
            container=container,
            timeout=self.timeout + stop_timeout,
            ok=(204, 304),
        )

    async def list_containers(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``docker ps -a`` as the API gives it (``Id``, ``Names``, ``Labels``, ``State`` …), filtered
        as the engine's ``filters`` (``{"label": ["lifeguard.check.type"]}``)."""
        params = {"all": "1"} | ({"filters": json.dumps(filters)} if filters else {})
        found: list[dict[str, Any]] = json.loads(await self._call("GET", "/containers/json", params=params))
        return found

    async def events(self, filters: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Docker's event stream (decoded), as the engine filters it; ends when the engine closes it,
        raises ``DockerUnavailable`` when it cannot be opened or breaks. Opening is bounded by the
        timeout; reading is not (an idle engine sends nothing for hours)."""
        import aiohttp

        params = {"filters": json.dumps(filters)} if filters else {}
        session = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                response = await session.get(
                    self._base + "/events", params=params,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
                )
        except TimeoutError:
            raise self._unreachable(f"Docker did not answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise self._unreachable(f"Docker unreachable at {self.url}: {_root_cause(exc)}") from None
        try:
            if response.status != 200:
                raise DockerError(f"Docker error: {_explanation(await response.read(), response.status)}")
            self._mark_reachable()
            while True:
                try:
                    line = await response.content.readuntil(b"\n")
                except (aiohttp.ClientError, ValueError, asyncio.IncompleteReadError) as exc:
                    raise self._unreachable(f"Docker event stream broke: {_root_cause(exc)}") from None
                if not line:
                    return  # the engine closed the stream
                if len(line) > _EVENTS_LINE_LIMIT or not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    yield event
        finally:
            response.close()

    async def close(self) -> None:
        """Drop the connections; a later call starts afresh."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # -- the protocol ---------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp

            connector: aiohttp.BaseConnector
            if self._socket is not None:
                connector = aiohttp.UnixConnector(path=self._socket, limit=8)
            else:
                connector = aiohttp.TCPConnector(limit=8)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        container: str | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> bytes:
        import aiohttp

        bound = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        since, pending = self._unanswered_since, self._first_answer
        if since is not None and pending is not None and self.reachable is not True:
            # Another call is already waiting on an engine not known to answer: wait for its answer
            # at most what is left of _CONNECT_WAIT, then fail fast rather than queue a timeout.
            try:
                await asyncio.wait_for(asyncio.shield(pending), max(0.0, _CONNECT_WAIT - (loop.time() - since)))
            except TimeoutError:
                raise self._unreachable(f"Docker unreachable at {self.url}: no answer yet (still connecting)") from None
        first = self._unanswered_since is None
        if first:
            self._unanswered_since, self._first_answer = loop.time(), loop.create_future()
        try:
            async with asyncio.timeout(bound):
                async with self._client().request(method, self._base + path, params=params) as response:
                    body = await response.read()
        except TimeoutError:
            raise self._unreachable(f"Docker did not answer within {bound:g}s") from None
        except aiohttp.ClientError as exc:
            raise self._unreachable(f"Docker unreachable at {self.url}: {_root_cause(exc)}") from None
        finally:
            if first:
                done, self._first_answer = self._first_answer, None
                self._unanswered_since = None
                if done is not None and not done.done():
                    done.set_result(None)  # answered or not: the waiting calls go on by themselves
        self._mark_reachable()  # an API error is an answer
        if response.status in ok:
            return body
        if response.status == 404 and container is not None:
            raise ContainerNotFound(f"container {container!r} not found")
        raise DockerError(f"Docker error: {_explanation(body, response.status)}")

    def _unreachable(self, reason: str) -> DockerUnavailable:
        was, self.reachable = self.reachable, False
        self.last_error = reason
        if was is not False and self.on_reachability is not None:
            self.on_reachability(False, reason)
        return DockerUnavailable(reason)

    def _mark_reachable(self) -> None:
        was, self.reachable = self.reachable, True
        self.last_error = None
        if was is not True and self.on_reachability is not None:
            self.on_reachability(True, None)


def _id(container: str) -> str:
    return quote(container, safe="")


def _demultiplex(raw: bytes) -> bytes:
    """Logs of a container without a TTY come in frames (1 byte stream, 3 zero bytes, 4 bytes of
    length, the data); a TTY container's come raw. Frames are joined, raw bytes kept as they are."""
    if len(raw) < 8 or raw[0] not in (0, 1, 2) or raw[1:4] != b"\0\0\0":
        return raw
    out, pos = [], 0
    while pos + 8 <= len(raw):
        (size,) = struct.unpack(">I", raw[pos + 4 : pos + 8])
        out.append(raw[pos + 8 : pos + 8 + size])
        pos += 8 + size
    return b"".join(out)


def _explanation(body: bytes, status: int) -> str:
    """The engine's own message (``{"message": "…"}``), else the status and the body's start."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str) and message:
        return message
    text = body[:200].decode("utf-8", errors="replace").strip()
    return f"{status}" + (f" {text}" if text else "")


def _root_cause(exc: BaseException) -> str:
    """The OS-level reason behind a wrapped connection error ("Connection refused"), if any.

    aiohttp nests the socket error (``ClientConnectorError(os_error=FileNotFoundError(2, ...))``);
    dig it out so the message says what an operator can act on.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__, getattr(current, "os_error", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return str(exc) or type(exc).__name__
