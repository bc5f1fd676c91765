"""``lifeguard notify test``: one clearly marked test message through one notifier, and its answer.

The first thing to run after adding a channel. The message is a synthetic event of kind
``notifier.test`` (a webhook receives ``"event": "notifier.test"``; chat channels show ``[TEST]``)
about an incident that does not exist. It goes straight to the notifier, one attempt, past the
outbox and its filters, and touches no database, so it works whether or not an agent is running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent import __version__
from agent.events import Event, Notification
from agent.timefmt import iso

if TYPE_CHECKING:  # pragma: no cover
    from actions.notifiers.base import Delivery
    from agent.config import Config

TEST_EVENT = "notifier.test"


def trial_notification(
    notifier: str, agent_name: str, evidence_url: str, now: float, event_id: str, incident_id: str
) -> Notification:
    """The test event as every notifier renders it: pure, so its rendering is tested exactly."""
    title = f"Test message from Lifeguard to notifier {notifier}: nothing is wrong"
    incident = {
        "id": incident_id,
        "check": "notify-test",
        "check_type": "test",
        "status": "open",
        "severity": "low",
        "sev": "SEV-4",
        "title": title,
        "opened_at": iso(now),
        "resolved_at": None,
        "target": f"lifeguard notify test {notifier}",
        "container": None,
        "resolve_reason": None,
        "heal": None,
        "timeline": [{"at": iso(now), "kind": "test", "message": "sent by `lifeguard notify test`"}],
    }
    event = Event(
        id=event_id,
        kind=TEST_EVENT,
        incident_id=incident_id,
        sequence=1,
        occurred_at=now,
        agent={"name": agent_name, "version": __version__},
        incident=incident,
        reason="test",
    )
    return Notification(event=event, evidence=None, evidence_url=evidence_url, evidence_public=False)


async def send_trial(config: Config, name: str, now: float) -> Delivery:
    """Render the test event with notifier ``name`` and make one attempt; its verdict, never an exception."""
    from actions.notifiers import build_notifier
    from actions.notifiers.base import Delivery
    from agent.store.changes import new_id
    from checks.base import CheckContext

    api = config.agent.api
    incident_id = new_id("inc", now)
    base = (api.public_url or f"http://{api.listen}").rstrip("/")
    notification = trial_notification(
        name, config.agent.name, f"{base}/api/incidents/{incident_id}/evidence", now, new_id("evt", now), incident_id
    )
    context = CheckContext()  # its HTTP session, made only if the notifier speaks HTTP
    notifier = build_notifier(config.notifier(name), lambda: context.http)
    try:
        try:
            body = notifier.render(notification)
        except Exception as exc:  # noqa: BLE001 - a verdict for the operator, as the outbox would give
            return Delivery("dead", f"cannot render the event: {type(exc).__name__}: {exc}"[:240])
        return await notifier.send(notification.event.id, body)
    finally:
        await notifier.close()
        await context.close()
