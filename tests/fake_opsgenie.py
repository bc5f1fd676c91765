"""A stand-in for Opsgenie's Alert API v2 on 127.0.0.1: its validation, its answers, its alerts.

``Authorization: GenieKey <key>`` with a known key, else ``401``; create (``POST /v2/alerts``),
close and add-note (``POST /v2/alerts/{alias}/close|notes?identifierType=alias``) checked as the real
API checks them (``message`` required and at most 130 characters, ``description`` 15,000, a note
required and 25,000, ``priority`` P1–P5, ``details`` a map of strings, responders with a type and an
identifier), answered as it answers: ``202 {"result": "Request will be processed", "took", "requestId"}``,
``422 {"message": "Request body is not processable. Please check the errors.", "errors": {field: reason}, …}``,
``404`` for a close or note of an alias it does not know. A test can force ``429`` or ``5xx``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from tests.fixtures_agent import LocalServer

API_KEY = "0b1e6a52-api-key-that-must-never-leak"
PRIORITIES = {"P1", "P2", "P3", "P4", "P5"}
RESPONDER_TYPES = {"team", "user", "escalation", "schedule"}


class OpsgenieFake(LocalServer):
    def __init__(self, api_keys: tuple[str, ...] = (API_KEY,)) -> None:
        super().__init__()
        self.api_keys = set(api_keys)
        self.requests: list[dict[str, Any]] = []  # method, path, query, headers, body, answered
        self.alerts: dict[str, dict[str, Any]] = {}  # alias -> {"status", "create", "notes", "close"}
        self.force: tuple[int, str, dict[str, str]] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["answered"] == 202]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/alerts", self._create)
        app.router.add_post("/v2/alerts/{identifier}/close", self._close)
        app.router.add_post("/v2/alerts/{identifier}/notes", self._note)

    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        entry: dict[str, Any] = {
            "path": request.path, "query": dict(request.query), "headers": dict(request.headers),
            "raw": raw, "body": None, "answered": None,
        }
        self.requests.append(entry)
        if self.force is not None:
            status, text, headers = self.force
            return entry, self._answer(entry, status, text=text, headers=headers)
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme != "GenieKey" or key not in self.api_keys:
            return entry, self._answer(entry, 401, {"message": "Could not authenticate"})
        if not request.content_type.startswith("application/json"):
            return entry, self._answer(entry, 415, {"message": "Unsupported Media Type"})
        try:
            entry["body"] = json.loads(raw) if raw else {}
        except ValueError:
            return entry, self._answer(entry, 400, {"message": "Invalid JSON body"})
        if not isinstance(entry["body"], dict):
            return entry, self._answer(entry, 400, {"message": "Invalid JSON body"})
        return entry, None

    async def _create(self, request: web.Request) -> web.Response:
        entry, refused = await self._begin(request)
        if refused:
            return refused
        body = entry["body"]
        errors = validate_create(body)
        if errors:
            return self._unprocessable(entry, errors)
        alias = body.get("alias") or body["message"]
        alert = self.alerts.get(alias)
        if alert and alert["status"] == "open":  # the same alias while open: de-duplicated
            alert["count"] += 1
        else:
            self.alerts[alias] = {"status": "open", "count": 1, "create": body, "notes": [], "close": None}
        return self._accepted(entry)

    async def _close(self, request: web.Request) -> web.Response:
        entry, alert, refused = await self._existing(request)
        if refused:
            return refused
        errors = _check_lengths(entry["body"], {"user": 100, "source": 100, "note": 25000})
        if errors:
            return self._unprocessable(entry, errors)
        alert["status"] = "closed"
        alert["close"] = entry["body"]
        return self._accepted(entry)

    async def _note(self, request: web.Request) -> web.Response:
        entry, alert, refused = await self._existing(request)
        if refused:
            return refused
        body = entry["body"]
        errors = _check_lengths(body, {"user": 100, "source": 100, "note": 25000})
        if not isinstance(body.get("note"), str) or not body["note"].strip():
            errors["note"] = "Note can not be empty."
        if errors:
            return self._unprocessable(entry, errors)
        alert["notes"].append(body)
        return self._accepted(entry)

    async def _existing(self, request: web.Request) -> tuple[dict[str, Any], Any, web.Response | None]:
        entry, refused = await self._begin(request)
        if refused:
            return entry, None, refused
        if request.query.get("identifierType") != "alias":
            return entry, None, self._unprocessable(entry, {"identifierType": "expected alias in these tests"})
        alias = request.match_info["identifier"]
        alert = self.alerts.get(alias)
        if alert is None:
            return entry, None, self._answer(entry, 404, {"message": f"Alert with alias [{alias}] does not exist"})
        return entry, alert, None

    def _accepted(self, entry: dict[str, Any]) -> web.Response:
        return self._answer(entry, 202, {"result": "Request will be processed"})

    def _unprocessable(self, entry: dict[str, Any], errors: dict[str, str]) -> web.Response:
        return self._answer(
            entry, 422, {"message": "Request body is not processable. Please check the errors.", "errors": errors})

    def _answer(
        self, entry: dict[str, Any], status: int, document: dict[str, Any] | None = None, *,
        text: str | None = None, headers: dict[str, str] | None = None,
    ) -> web.Response:
        entry["answered"] = status
        if text is None:
            text = json.dumps(document | {"took": 0.002, "requestId": str(uuid.uuid4())} if document else {})
        return web.Response(status=status, text=text, headers=headers, content_type="application/json")


def validate_create(body: dict[str, Any]) -> dict[str, str]:
    errors = _check_lengths(body, {
        "message": 130, "alias": 512, "description": 15000, "entity": 512, "source": 100, "user": 100,
        "note": 25000})
    if not isinstance(body.get("message"), str) or not body["message"].strip():
        errors["message"] = "Message can not be empty."
    if "priority" in body and body["priority"] not in PRIORITIES:
        errors["priority"] = f"Priority should be one of {sorted(PRIORITIES)}"
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > 20 or any(not isinstance(t, str) or len(t) > 50 for t in tags):
        errors["tags"] = "Tags should be at most 20 strings of at most 50 characters"
    details = body.get("details", {})
    if not isinstance(details, dict) or any(not isinstance(v, str) for v in details.values()):
        errors["details"] = "Details should be a map of strings"
    elif sum(len(k) + len(v) for k, v in details.items()) > 8000:
        errors["details"] = "Details should be at most 8000 characters"
    for i, responder in enumerate(body.get("responders", [])):
        if not isinstance(responder, dict) or responder.get("type") not in RESPONDER_TYPES:
            errors[f"responders[{i}].type"] = "Invalid responder type"
        elif not any(isinstance(responder.get(k), str) for k in ("id", "name", "username")):
            errors[f"responders[{i}]"] = "Responder should have an id, a name or a username"
    return errors


def _check_lengths(body: dict[str, Any], limits: dict[str, int]) -> dict[str, str]:
    errors = {}
    for field, limit in limits.items():
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            errors[field] = f"{field.capitalize()} should be a string"
        elif len(value) > limit:
            errors[field] = f"{field.capitalize()} can not be longer than {limit} characters"
    return errors
