"""Shared parts of the chat channels' tests: an event made by the real store, and a local service.

``chat_notification`` writes an incident through the real ``Store`` (as test_payload.py does),
reads its event back and pairs it with an evidence bundle that has a failed container and its
logs. ``Service`` is a real aiohttp server on 127.0.0.1 that records every request and answers
what the test tells it, the way Slack, Discord or Teams answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.events import Notification
from agent.store import Change, Store
from tests.fixtures_agent import LocalServer

OPENED_AT = 1763953962.123  # 2025-11-24T03:12:42.123Z
INCIDENT_ID = "inc_019ab5d2c7e8a1b2c3d4e5f6"
EVIDENCE_URL = f"https://lifeguard.example.com/api/incidents/{INCIDENT_ID}/evidence"
HOSTILE = "<b>bold</b> *star* _under_ ~strike~ `tick` ```fence``` @channel @here <!channel> </code> [x](https://evil.example) # h"
"""Markup of every channel at once: must come out as text, never as formatting, a link or a ping."""


def bundle(message: str = "HTTP 500", logs: list[str] | None = None) -> dict[str, Any]:
    return {
        "phase": "opened",
        "collected_at": "2025-11-24T03:12:42.180Z",
        "checks": [
            {"at": "2025-11-24T03:12:41.923Z", "ok": True, "latency_ms": 2.0, "message": "HTTP 200"},
            {"at": "2025-11-24T03:12:42.123Z", "ok": False, "latency_ms": 3.1, "message": message},
        ],
        "response": {"url": "http://127.0.0.1:8080/health", "status": 500, "headers": {}, "body": "boom",
                     "body_truncated": False},
        "container": {
            "name": "api",
            "state": {"status": "exited", "exit_code": 137, "oom_killed": True},
            "logs": logs if logs is not None else [
                "starting api v2.3.1",
                "listening on :8080",
                "GET /health 200 1ms",
                "allocating cache: 2048 MiB",
                "fatal: out of memory (used 2047 MiB of 2048 MiB)",
                "Killed",
            ],
        },
        "host": {"hostname": "web-01"},
    }


def chat_notification(
    tmp_path: Path,
    *,
    check: str = "api",
    title: str = "api failing: HTTP 500",
    message: str = "HTTP 500",
    logs: list[str] | None = None,
    kind: str = "incident.opened",
    public: bool = True,
) -> Notification:
    """An event as the outbox hands it to a notifier, made and read back by the real store."""
    store = Store(tmp_path / f"chat-{kind}.db", agent_info={"name": "web-01", "version": "0.1.0"})
    store.open()
    try:
        store.apply(Change(
            incident_id=INCIDENT_ID, at=OPENED_AT, notifiers=["chat"],
            create={"check_name": check, "check_type": "http", "target": "http://127.0.0.1:8080/health",
                    "container": "api", "status": "open", "severity": "critical",
                    "title": title, "opened_at": OPENED_AT, "max_restarts": 3},
            state={"restarts": 1, "last_heal": "attempted"},
            timeline=[("opened", message), ("heal_attempted", "restarting container 'api'")],
            events=[("incident.opened", None)],
            heal_attempt=("restart_container", "api"),
        ))
        if kind == "incident.resolved":
            [first] = store.outbox.due("chat", OPENED_AT + 1)
            store.outbox.mark_delivered(first, OPENED_AT + 1, "HTTP 200")
            store.apply(Change(
                incident_id=INCIDENT_ID, at=OPENED_AT + 192, notifiers=["chat"],
                update={"status": "resolved", "resolved_at": OPENED_AT + 192},
                timeline=[("resolved", "HTTP 200")],
                events=[("incident.resolved", None)],
            ))
        items = store.outbox.due("chat", OPENED_AT + 500)
    finally:
        store.close()
    [item] = [i for i in items if i.event.kind == kind]
    event = replace(item.event, id="evt_019ab5d2c7e84f1a9c3b2d10")  # random by design; pinned
    return Notification(event=event, evidence=bundle(message, logs), evidence_url=EVIDENCE_URL,
                        evidence_public=public)


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    body: str | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Service(LocalServer):
    """A chat service's webhook endpoint: records requests, answers with ``answers`` in turn.

    Once the queue is empty every request gets ``default``. Each channel's path (``/slack/…``,
    ``/discord/…``) is its own, so one server can stand in for all three services at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []
        self.answers: dict[str, list[Answer]] = {}
        self.default: dict[str, Answer] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def of(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    async def _any(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, request.rel_url.raw_query_string, dict(request.headers), body))
        channel = "/" + request.path.strip("/").split("/", 1)[0]
        queue = self.answers.get(channel) or []
        answer = queue.pop(0) if queue else self.default.get(channel, Answer(200, "ok"))
        if isinstance(answer.body, dict):
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        if answer.status == 204:
            return web.Response(status=204, headers=answer.headers)
        return web.Response(status=answer.status, text=answer.body or "", headers=answer.headers)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._any)
