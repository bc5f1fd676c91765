"""Notifiers: where incident events go. One module per type, registered here and nowhere else.

Adding a type touches its module, one entry in ``NOTIFIER_TYPES`` and its test.
"""

from __future__ import annotations

from actions.notifiers.base import AnyNotifier, Delivery, HttpSessionFactory, Notifier
from agent.config import NotifierConfigBase
from agent.registry import LazyRegistry

__all__ = ["NOTIFIER_TYPES", "Delivery", "Notifier", "build_notifier"]

# Each type's module is imported when a config uses it (or a test asks for it), not at start:
# a host with a webhook and a file notifier never loads the chat and paging channels.
NOTIFIER_TYPES: LazyRegistry[type[AnyNotifier]] = LazyRegistry({
    "webhook": "actions.notifiers.webhook:WebhookNotifier",
    "file": "actions.notifiers.file:FileNotifier",
    "slack": "actions.notifiers.slack:SlackNotifier",
    "discord": "actions.notifiers.discord:DiscordNotifier",
    "teams": "actions.notifiers.teams:TeamsNotifier",
    "telegram": "actions.notifiers.telegram:TelegramNotifier",
    "email": "actions.notifiers.email:EmailNotifier",
    "pagerduty": "actions.notifiers.pagerduty:PagerDutyNotifier",
    "opsgenie": "actions.notifiers.opsgenie:OpsgenieNotifier",
    "alertmanager": "actions.notifiers.alertmanager:AlertmanagerNotifier",
    "apprise": "actions.notifiers.apprise:AppriseNotifier",
})


def build_notifier(config: NotifierConfigBase, http: HttpSessionFactory) -> AnyNotifier:
    """The notifier for one ``notifiers:`` entry of the config."""
    try:
        cls = NOTIFIER_TYPES[config.type]
    except KeyError:
        known = ", ".join(sorted(NOTIFIER_TYPES))
        raise ValueError(f"notifier {config.name!r}: unknown type {config.type!r} (known: {known})") from None
    return cls(config, http)
