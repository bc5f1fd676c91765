"""The agent's one door to the Docker Engine.

docker-py blocks, can hang on a stuck engine, and raises a mix of ``requests``, ``docker`` and
``OSError`` exceptions. ``DockerEngine`` confines all of that here: every call runs in the
engine's own small thread pool (so a hung Docker can't starve the event loop's default executor),
each is bounded by a timeout, and every lower-layer error is translated into the ``DockerError``
family, so checks, healers and evidence catch one thing. The engine reconnects by itself: after a
connection failure the client is dropped and rebuilt on the next call, so a Docker that comes back
is picked up without restarting the agent. The one long call, the event stream, reads in a thread
of its own (a daemon thread, closed with the stream), never in the pool.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    import docker

T = TypeVar("T")

# Enough for a handful of container checks, evidence and a heal at once; small so a hung engine
# ties up only these threads.
_WORKERS = 4
_CONNECT_WAIT = 0.5  # seconds a call waits for another thread's connect before failing fast


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
        # Called on the event loop when ``reachable`` changes: (reachable, why not).
        self.on_reachability: Callable[[bool, str | None], None] | None = None
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"DockerEngine({self.url!r}, reachable={self.reachable})"

    async def ping(self) -> bool:
        """Whether the engine answers; never raises for an unreachable engine."""
        try:
            await self._call(lambda api: api.ping())
        except DockerUnavailable:
            return False
        return True

    async def inspect(self, container: str) -> dict[str, Any]:
        """The raw ``docker inspect`` attributes of a container."""
        return await self._call(lambda api: api.inspect_container(container), container=container)

    async def logs(self, container: str, tail: int = 200) -> list[str]:
        """The last ``tail`` lines of stdout and stderr, each prefixed with Docker's timestamp."""
        raw: bytes = await self._call(
            lambda api: api.logs(container, stdout=True, stderr=True, timestamps=True, tail=tail),
            container=container,
        )
        return raw.decode("utf-8", errors="replace").splitlines()

    async def restart(self, container: str, stop_timeout: int = 10) -> None:
        """Restart a container, giving it ``stop_timeout`` seconds to stop before it is killed."""
        await self._call(
            lambda api: api.restart(container, timeout=stop_timeout),
            container=container,
            timeout=self.timeout + stop_timeout,
        )

    async def list_containers(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``docker ps -a`` as the API gives it (``Id``, ``Names``, ``Labels``, ``State`` …), filtered
        as the engine's ``filters`` (``{"label": ["lifeguard.check.type"]}``)."""
        found: list[dict[str, Any]] = await self._call(lambda api: api.containers(all=True, filters=filters or {}))
        return found

    async def events(self, filters: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Docker's event stream (decoded), as the engine filters it; ends when the engine closes it,
        raises ``DockerUnavailable`` when it cannot be opened or breaks. Read in a thread of its own."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        streams: list[Any] = []
        closed = threading.Event()
        end = object()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody listens any more
                pass

        def pump() -> None:
            import docker.errors
            import requests.exceptions

            try:
                stream = self._connect().events(decode=True, filters=filters or {})
                streams.append(stream)
                if closed.is_set():  # the reader left while the stream was opening
                    stream.close()
                    return
                for event in stream:
                    put(event)
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                put(DockerUnavailable(f"Docker event stream broke: {_root_cause(exc)}"))
            except DockerError as exc:
                put(exc)
            except Exception as exc:  # a closed stream raises what it raises: the end all the same
                put(DockerUnavailable(f"Docker event stream ended: {type(exc).__name__}: {exc}"))
            finally:
                put(end)

        threading.Thread(target=pump, name="lifeguard-docker-events", daemon=True).start()
        try:
            while True:
                item = await queue.get()
                if item is end:
                    return
                if isinstance(item, DockerError):
                    self._mark_unreachable(str(item))
                    raise item
                self._mark_reachable()
                yield item
        finally:
            closed.set()
            for stream in streams:  # closing the socket ends the thread's read; never waited for here
                threading.Thread(target=stream.close, name="lifeguard-docker-events-close", daemon=True).start()

    async def close(self) -> None:
        """Drop the connection and the worker threads; a later call starts afresh."""
        client = None
        # A connect under way holds the lock until the engine answers or times out: never wait for
        # it on the event loop (a SIGTERM during a hung start would hang). The client such a
        # connect may still make is not closed here; the worker threads are let go below.
        if self._client_lock.acquire(blocking=False):
            client, self._client = self._client, None
            self._client_lock.release()
        if client is not None:
            client.close()
        if self._executor is not None:
            # A thread stuck on a hung engine ends at docker-py's own timeout; don't wait for it.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _call(
        self,
        fn: Callable[[docker.APIClient], T],
        *,
        container: str | None = None,
        timeout: float | None = None,
    ) -> T:
        bound = self.timeout if timeout is None else timeout
        if self._executor is None:
            self._executor = ThreadPoolExecutor(_WORKERS, thread_name_prefix="lifeguard-docker")
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._blocking_call, fn, container), bound
            )
        except TimeoutError:
            self._mark_unreachable(f"Docker did not answer within {bound:g}s")
            raise DockerUnavailable(self.last_error) from None
        except DockerUnavailable as exc:
            self._mark_unreachable(str(exc))
            raise
        except DockerError:
            self._mark_reachable()  # an API error is an answer
            raise
        self._mark_reachable()
        return result

    def _blocking_call(self, fn: Callable[[docker.APIClient], T], container: str | None) -> T:
        """Runs in a worker thread: the only place docker-py is touched."""
        import docker.errors
        import requests.exceptions

        client = self._connect()
        try:
            return fn(client)
        except docker.errors.NotFound as exc:
            if container is not None:
                raise ContainerNotFound(f"container {container!r} not found") from None
            raise DockerError(f"Docker error: {_explanation(exc)}") from None
        except docker.errors.APIError as exc:
            raise DockerError(f"Docker error: {_explanation(exc)}") from None
        except requests.exceptions.Timeout:
            raise DockerUnavailable(f"Docker did not answer within {self.timeout:g}s") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            self._drop(client)
            raise DockerUnavailable(
                f"Docker unreachable at {self.url}: {_root_cause(exc)}"
            ) from None
        except docker.errors.DockerException as exc:
            raise DockerError(f"Docker error: {exc}") from None

    def _connect(self) -> docker.APIClient:
        # A connect under way (an engine that accepts and never answers holds it for ``timeout``)
        # fails the other calls fast with the reason, rather than each waiting out its own timeout.
        if not self._client_lock.acquire(timeout=_CONNECT_WAIT):
            raise DockerUnavailable(f"Docker unreachable at {self.url}: no answer yet (still connecting)")
        try:
            if self._client is not None:
                return self._client
            import docker
            import requests.exceptions

            try:
                # "auto" negotiates the engine's API version (1.41 on Debian's 20.10); pinning a
                # newer one is refused by older engines.
                self._client = docker.APIClient(
                    # docker-py hands the timeout to requests, which takes a float; the stubs say int.
                    base_url=self.url, version="auto", timeout=self.timeout  # type: ignore[arg-type]
                )
            except docker.errors.DockerException as exc:
                # Creating the client asks the engine for its version: the same failures as a call.
                if isinstance(exc.__cause__, requests.exceptions.Timeout):
                    raise DockerUnavailable(
                        f"Docker did not answer within {self.timeout:g}s"
                    ) from None
                raise DockerUnavailable(
                    f"Docker unreachable at {self.url}: {_root_cause(exc)}"
                ) from None
            return self._client
        finally:
            self._client_lock.release()

    def _drop(self, client: docker.APIClient) -> None:
        """Forget a client that failed to connect, unless another thread already replaced it."""
        with self._client_lock:
            if self._client is client:
                self._client = None
        client.close()

    def _mark_reachable(self) -> None:
        was, self.reachable = self.reachable, True
        self.last_error = None
        if was is not True and self.on_reachability is not None:
            self.on_reachability(True, None)

    def _mark_unreachable(self, reason: str) -> None:
        was, self.reachable = self.reachable, False
        self.last_error = reason
        if was is not False and self.on_reachability is not None:
            self.on_reachability(False, reason)


def _explanation(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _root_cause(exc: BaseException) -> str:
    """The OS-level reason behind a wrapped connection error ("Connection refused"), if any.

    requests and docker-py nest the socket error several layers deep, sometimes only as an
    argument (``('Connection aborted.', FileNotFoundError(2, ...))``); dig it out so the message
    says what an operator can act on.
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
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return str(exc)
