"""A stand-in for PagerDuty's Events API v2 on 127.0.0.1: its validation, its answers, its alerts.

It checks a request the way the real endpoint does (a JSON object, a known 32-character routing key,
an ``event_action``, a trigger's ``payload.summary`` / ``source`` / ``severity``, the limits) and
answers as it does: ``202`` with ``{"status": "success", "message": "Event processed", "dedup_key"}``,
``400`` with ``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``.
A test can make it answer ``429`` or ``5xx`` instead. It keeps one alert per ``dedup_key``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fixtures_agent import LocalServer

ROUTING_KEY = "R0ut1ngKeyThatMustNeverLeak00001"  # 32 characters, as PagerDuty's are
SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}


class PagerDutyFake(LocalServer):
    def __init__(self, routing_keys: tuple[str, ...] = (ROUTING_KEY,)) -> None:
        super().__init__()
        self.routing_keys = set(routing_keys)
        self.requests: list[dict[str, Any]] = []  # every request: headers, body, what it answered
        self.alerts: dict[str, dict[str, Any]] = {}  # dedup_key -> {"status", "log": [events]}
        self.force: tuple[int, str, dict[str, str]] | None = None  # (status, body, headers) to answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/enqueue"

    def accepted(self) -> list[dict[str, Any]]:
        return [r["event"] for r in self.requests if r["answered"] == 202]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        entry: dict[str, Any] = {"headers": dict(request.headers), "raw": raw, "event": None}
        self.requests.append(entry)
        if self.force is not None:
            status, text, headers = self.force
            entry["answered"] = status
            return web.Response(status=status, text=text, headers=headers, content_type="application/json")
        try:
            event = json.loads(raw)
        except ValueError:
            return self._invalid(entry, ["Event object is not valid JSON"])
        entry["event"] = event
        errors = validate(event, self.routing_keys)
        if errors:
            return self._invalid(entry, errors)
        action = event["event_action"]
        key = event.get("dedup_key") or f"generated-{len(self.alerts) + 1}"
        if action == "trigger":
            alert = self.alerts.setdefault(key, {"status": "triggered", "log": []})
            if alert["status"] == "resolved":  # a trigger after a resolve opens a new alert
                alert.update(status="triggered", log=[])
            alert["log"].append(event)
        elif key in self.alerts:  # acknowledge / resolve of an unknown key is accepted and dropped
            self.alerts[key]["status"] = "resolved" if action == "resolve" else "acknowledged"
            self.alerts[key]["log"].append(event)
        entry["answered"] = 202
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202)

    def _invalid(self, entry: dict[str, Any], errors: list[str]) -> web.Response:
        entry["answered"] = 400
        return web.json_response(
            {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400)


def validate(event: Any, routing_keys: set[str]) -> list[str]:
    """What the Events API v2 says is wrong with ``event`` (empty when it is accepted)."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key:
        errors.append("'routing_key' is missing or blank")
    elif len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    elif key not in routing_keys:
        errors.append("Invalid routing key")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is missing or blank" if not action else "'event_action' is invalid")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or blank"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors.append("'payload.summary' is missing or blank")
        elif len(summary) > 1024:
            errors.append("Length of 'payload.summary' is too long (maximum is 1024 characters)")
        if not isinstance(payload.get("source"), str) or not payload["source"].strip():
            errors.append("'payload.source' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
        if "custom_details" in payload and not isinstance(payload["custom_details"], (dict, str)):
            errors.append("'payload.custom_details' must be an object")
        for link in event.get("links") or []:
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                errors.append("'links' entries need an 'href'")
    return errors
