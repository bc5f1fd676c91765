"""Append events to a local JSON Lines file.

For hosts without a receiver, for audits, and for piping into tools that tail a file. One
event is one compact line, so ``tail -f``, ``jq`` and log shippers read it as-is. The file
is opened for each write, so log rotation (move and recreate) needs no signal.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from actions.notifiers.base import Delivery, HttpSessionFactory, Notifier
from agent import payload
from agent.config import NotifierConfigBase
from agent.config.types import After, Before, absolute, base_dir, state_dir

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import Notification

# Evidence carries container logs and response bodies: not for every local user to read.
_FILE_MODE = 0o640


def _absolute_path(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return str(absolute(value, base_dir()))
    return value


def _a_file(value: str) -> str:
    if os.path.isdir(value):  # every append would fail, and every event be retried for nothing
        raise ValueError(f"{value} is a folder; name a file in it")
    return value


class FileNotifierConfig(NotifierConfigBase):
    """Append each event as one JSON line to a file."""

    type: Literal["file"]
    path: Annotated[str, Before(_absolute_path), After(_a_file)]  # default: <state_dir>/events.jsonl

    @classmethod
    def prepare(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("path") is None:
            return {**data, "path": str(state_dir() / "events.jsonl")}
        return data


class FileNotifier(Notifier[FileNotifierConfig]):
    """Append each event as one JSON line to ``config.path``."""

    type: ClassVar[str] = "file"
    config_model = FileNotifierConfig
    needs = frozenset()
    config: FileNotifierConfig

    def __init__(self, config: FileNotifierConfig, http: HttpSessionFactory) -> None:
        super().__init__(config, http)
        self._path = str(config.path)
        # One thread of its own, not the default executor (DNS lookups use that): writes queue
        # there one at a time, so two sends never interleave a line, and a slow disk stalls
        # nothing but this file's deliveries.
        self._writer: ThreadPoolExecutor | None = None

    def render(self, notification: Notification) -> bytes:
        return render_line(notification)

    async def send(self, event_id: str, body: bytes) -> Delivery:
        line = body if body.endswith(b"\n") else body + b"\n"
        if b"\n" in line[:-1]:  # the same body would fail the same way on every retry
            return Delivery("dead", "body is not one line")
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lifeguard-file-{self.name}")
        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, _append, self._path, line)
        except OSError as exc:
            return Delivery("retry", f"cannot write {self._path}: {exc.strerror or type(exc).__name__}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the outbox needs a verdict, never an exception
            return Delivery("retry", f"unexpected error: {type(exc).__name__}: {exc}"[:240])
        return Delivery("delivered", f"appended {len(line)} bytes to {self._path}")

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.shutdown, wait=True)  # a write under way finishes whole


def render_line(notification: Notification) -> bytes:
    """One compact JSON line (UTF-8, not escaped): the same document a webhook receives."""
    document = payload.event_document(notification)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _append(path: str, line: bytes) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    try:
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        # "delivered" lets the outbox forget the event, so the line must survive a crash.
        os.fsync(fd)
    finally:
        os.close(fd)
