"""Prometheus Alertmanager: each incident is one alert, kept firing while it is open.

Teams with many hosts already run Alertmanager to de-duplicate, group, silence and route a
fleet's alerts; an agent that posts its incidents there joins that pipeline instead of paging on
its own. Every event of an incident posts the same alert (same labels, so Alertmanager sees one
alert whose annotations change); the resolved event posts it with ``endsAt``.

**Delivered when one peer accepted it.** ``urls`` lists the peers of one Alertmanager cluster (or
a single one). Each attempt posts to every peer at once; the peers gossip alerts to each other,
so one accepted copy reaches them all, and posting to each is only for when one is down. So the
attempt counts as delivered when at least one peer answered 2xx; it is retried while none did,
and dead only when every peer refused it for good (a 4xx: the same alert would be refused again).

**Kept firing.** Alertmanager resolves an alert posted without ``endsAt`` once its
``resolve_timeout`` (5m by default) passes without the alert being posted again. So while an
incident is open the notifier re-posts its last accepted alert every ``resend_every``, from a task
of its own (cancelled by ``close``); an agent that dies stops re-posting and its alerts time out,
which is what a fleet wants to see of a dead agent. After a restart the outbox hands the notifier
the incidents still open (``resume``), and the re-posting goes on at once. A resolved event stops
the re-posting of its incident even before it is delivered: from then on nothing claims it is firing.

``render`` is pure (the alert is a function of the event); the re-posts send the bytes it made.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import structlog

from actions.notifiers.base import Delivery, HttpSessionFactory, repr_without
from actions.notifiers.http import (
    DETAIL_CHARS,
    READ_LIMIT,
    USER_AGENT,
    Answer,
    HttpNotifier,
    classify_error,
)
from actions.notifiers.message import build_message
from agent.config import NotifierConfigBase
from agent.config.types import After, Before, HttpUrl, PositiveDuration
from agent.durations import format_duration
from agent.events import Event, Notification
from agent.redact import url_secrets
from agent.timefmt import iso

if TYPE_CHECKING:  # pragma: no cover
    from agent.events import OpenIncident

log = structlog.get_logger("lifeguard.notifiers.alertmanager")

ALERTNAME = "LifeguardIncident"
TEST_ALERTNAME = "LifeguardTest"
TEST_ALERT_LASTS = 300.0  # a test alert resolves by itself after this long (seconds)
API_PATH = "/api/v2/alerts"
MIN_RESEND_EVERY = 1.0


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _each_once(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must list at least 1 URL")
    endpoints = [alerts_endpoint(url) for url in value]
    if len(set(endpoints)) != len(endpoints):
        raise ValueError("lists the same Alertmanager twice")
    return value


def _at_least_a_second(value: float) -> float:
    if value < MIN_RESEND_EVERY:
        raise ValueError(f"must be at least {format_duration(MIN_RESEND_EVERY)}")
    return value


class AlertmanagerNotifierConfig(NotifierConfigBase):
    """Post each incident as an alert to Alertmanager (every peer of a cluster), kept firing while open."""

    type: Literal["alertmanager"]
    # Base URLs (``http://am-1:9093``); a path prefix (``--web.route-prefix``) is kept.
    urls: Annotated[list[HttpUrl], Before(_one_or_more), After(_each_once)]
    resend_every: Annotated[PositiveDuration, After(_at_least_a_second)] = 60.0

    def __repr__(self) -> str:
        return repr_without(self, "urls")  # left out of reprs, as a URL may carry a user and password


class AlertmanagerNotifier(HttpNotifier[AlertmanagerNotifierConfig]):
    """``POST {url}/api/v2/alerts`` to every URL; re-posts open incidents' alerts every ``resend_every``."""

    type: ClassVar[str] = "alertmanager"
    config_model = AlertmanagerNotifierConfig
    config: AlertmanagerNotifierConfig

    def __init__(
        self,
        config: AlertmanagerNotifierConfig,
        http: HttpSessionFactory,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, http, clock=clock)
        self._endpoints = [alerts_endpoint(url) for url in config.urls]
        self._firing: dict[str, bytes] = {}  # incident id -> its last alert accepted (what is re-posted)
        # One per incident: a re-post and the resolved post of one incident never cross, or
        # Alertmanager could take the firing copy last and fire it again for a resolve_timeout.
        self._locks: dict[str, asyncio.Lock] = {}
        self._resender: asyncio.Task[None] | None = None
        self._resend_failing = False

    @property
    def firing(self) -> list[str]:
        """Ids of the incidents whose alerts this notifier keeps firing."""
        return list(self._firing)

    def private_values(self) -> list[str]:
        found = super().private_values()
        for url in self.config.urls:
            found += url_secrets(url)
        return found

    def render(self, notification: Notification) -> bytes:
        return render_alerts(notification)

    # -- one attempt: a POST to every peer ------------------------------------------------------
    async def send(self, event_id: str, body: bytes) -> Delivery:
        tracked = _tracked(body)
        if tracked is None:  # not an incident's alert (a test alert): posted, never re-posted
            return await self._post_all(body)
        incident_id, firing = tracked
        async with self._lock(incident_id):
            if not firing:
                self._forget(incident_id)  # resolved: no re-post claims it is firing any more
            result = await self._post_all(body)
            if firing and result.outcome == "delivered":
                self._firing[incident_id] = body
                self._start_resending(first_in=self.config.resend_every)
        return result

    async def resume(self, open_incidents: Sequence[OpenIncident]) -> None:
        for open_incident in open_incidents:
            body = self.render(_as_notification(open_incident))
            tracked = _tracked(body)
            if tracked is not None and tracked[1]:
                self._firing.setdefault(tracked[0], body)
        if self._firing:
            self._start_resending(first_in=0.0)  # the last post was before the restart: now, not later

    async def close(self) -> None:
        if self._resender is not None:
            task, self._resender = self._resender, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _post_all(self, body: bytes) -> Delivery:
        results = await asyncio.gather(*(self._post(url, body) for url in self._endpoints))
        return combine([(_peer(url), result) for url, result in zip(self._endpoints, results, strict=True)])

    async def _post(self, url: str, body: bytes) -> Delivery:
        try:
            return await self._attempt_at(url, body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a verdict per peer, never an exception
            return classify_error(exc, self.config.timeout, self.redact)

    async def _attempt_at(self, url: str, body: bytes) -> Delivery:
        import aiohttp

        timeout = float(self.config.timeout)
        now = self._clock()
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        async with asyncio.timeout(timeout):  # also bounds reading the reply, as HttpNotifier does
            async with self._http().post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                head = await resp.content.read(READ_LIMIT)
                return self.classify(Answer(resp.status, resp.headers, head, now))

    # -- keeping open incidents firing ---------------------------------------------------------
    def _lock(self, incident_id: str) -> asyncio.Lock:
        return self._locks.setdefault(incident_id, asyncio.Lock())

    def _forget(self, incident_id: str) -> None:
        self._firing.pop(incident_id, None)
        # The lock is held by the caller and stays in the dict until then; dropping it here is
        # safe because nothing re-posts a forgotten incident, so nobody asks for it again.
        self._locks.pop(incident_id, None)

    def _start_resending(self, first_in: float) -> None:
        if self._resender is None or self._resender.done():
            self._resender = asyncio.create_task(self._resend_loop(first_in), name=f"alertmanager:{self.name}")

    async def _resend_loop(self, first_in: float) -> None:
        await asyncio.sleep(first_in)
        while True:
            try:
                await self._resend_once()
            except Exception as exc:  # never dies: the next round tries again
                log.error("alertmanager.resend_error", notifier=self.name, error=f"{type(exc).__name__}: {exc}"[:240])
            await asyncio.sleep(self.config.resend_every)

    async def _resend_once(self) -> None:
        incidents = list(self._firing)
        if not incidents:
            return
        results = await asyncio.gather(*(self._resend(incident_id) for incident_id in incidents))
        failed = [(i, r) for i, r in zip(incidents, results, strict=True) if r is not None and r.outcome != "delivered"]
        if failed and not self._resend_failing:
            incident_id, result = failed[0]
            log.warning(
                "alertmanager.resend_failed",
                notifier=self.name,
                incidents=len(failed),
                incident_id=incident_id,
                detail=result.detail,
            )
        elif not failed and self._resend_failing:
            log.info("alertmanager.resend_recovered", notifier=self.name, incidents=len(incidents))
        self._resend_failing = bool(failed)
        log.debug("alertmanager.resent", notifier=self.name, incidents=len(incidents), failed=len(failed))

    async def _resend(self, incident_id: str) -> Delivery | None:
        async with self._lock(incident_id):
            body = self._firing.get(incident_id)  # resolved while this round waited: not re-posted
            return None if body is None else await self._post_all(body)


# -- the alert: pure ----------------------------------------------------------------------------
def render_alerts(notification: Notification) -> bytes:
    """The body ``POST /api/v2/alerts`` takes: a JSON list holding this event's one alert."""
    return json.dumps([alert_of(notification)], separators=(",", ":")).encode()


def alert_of(notification: Notification) -> dict[str, Any]:
    """The alert of one event: the same labels for every event of an incident, ``endsAt`` once resolved."""
    event = notification.event
    incident = event.incident
    message = build_message(notification)
    test = event.kind == "notifier.test"
    labels = {
        "alertname": TEST_ALERTNAME if test else ALERTNAME,
        "incident_id": event.incident_id,
        "check": str(incident.get("check") or ""),
        "severity": message.severity,
        "sev": message.sev,
        "instance": str(event.agent.get("name") or ""),
        "container": str(incident.get("container") or ""),
        **tag_labels(incident),
    }
    alert: dict[str, Any] = {
        # An empty value is no label at all to Alertmanager: left out rather than sent blank.
        "labels": {name: value for name, value in labels.items() if value},
        "annotations": {
            "summary": message.title,
            "description": message.last_error or message.title,
            "evidence_url": notification.evidence_url,
        },
        "startsAt": incident.get("opened_at") or iso(event.occurred_at),
        "generatorURL": notification.evidence_url,  # Alertmanager's UI links it as the alert's source
    }
    if test:
        alert["endsAt"] = iso(event.occurred_at + TEST_ALERT_LASTS)
    elif incident.get("status") == "resolved" and incident.get("resolved_at"):
        alert["endsAt"] = incident["resolved_at"]
    return alert


def tag_labels(incident: dict[str, Any]) -> dict[str, str]:
    """The check's tags as one label, ``tags=",db,payments,"``, when the incident snapshot has them.

    Prometheus' way of putting a list in a label (as its service discovery does for Consul tags):
    joined, with a comma at each end, so a route or a silence matches one tag with
    ``tags=~".*,db,.*"``. Read from the snapshot's ``tags`` (a list of names), so every event of
    an incident, and its re-posts after a restart, carry the same label set.
    """
    tags = incident.get("tags")
    if not isinstance(tags, list | tuple) or not tags:
        return {}
    return {"tags": "," + ",".join(str(tag) for tag in tags) + ","}


def combine(results: Sequence[tuple[str, Delivery]]) -> Delivery:
    """One verdict for one post to every peer: delivered when any accepted it, dead when all refused it."""
    if len(results) == 1:
        return results[0][1]
    accepted = [result for _, result in results if result.outcome == "delivered"]
    failed = [(peer, result) for peer, result in results if result.outcome != "delivered"]
    detail = f"accepted by {len(accepted)} of {len(results)}"
    if failed:
        detail += ": " + "; ".join(f"{peer} {result.detail}"[:80] for peer, result in failed)
    detail = detail[:DETAIL_CHARS]
    if accepted:
        return Delivery("delivered", detail, status=accepted[0].status)
    if all(result.outcome == "dead" for _, result in results):
        return Delivery("dead", detail, status=results[0][1].status)
    waits = [r.retry_after for _, r in results if r.outcome == "retry" and r.retry_after is not None]
    return Delivery("retry", detail, status=failed[0][1].status, retry_after=min(waits) if waits else None)


def alerts_endpoint(url: str) -> str:
    """``{url}/api/v2/alerts``; a URL that already ends with it is taken as it is."""
    base = url.split("?", 1)[0].rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


def _peer(url: str) -> str:
    """A peer as a detail names it: host and port, never the credentials a URL may carry."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _tracked(body: bytes) -> tuple[str, bool] | None:
    """(incident id, still firing) of a body this notifier rendered for an incident; None otherwise."""
    try:
        [alert] = json.loads(body)
        labels = alert["labels"]
        if labels.get("alertname") != ALERTNAME:
            return None
        return str(labels["incident_id"]), "endsAt" not in alert
    except (ValueError, TypeError, KeyError):
        return None


def _as_notification(open_incident: OpenIncident) -> Notification:
    """An open incident as it is now, in the shape ``render`` takes (the alert reads no event field
    but the kind, the incident, the agent and the time)."""
    incident = open_incident.incident
    event = Event(
        id="",
        kind="incident.opened",
        incident_id=str(incident["id"]),
        sequence=0,
        occurred_at=time.time(),
        agent=dict(open_incident.agent),
        incident=incident,
    )
    return Notification(event=event, evidence=open_incident.evidence, evidence_url=open_incident.evidence_url)
