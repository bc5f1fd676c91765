"""Notifiers: where incident events go. One module per type, registered here and nowhere else.

Adding a type touches its module, one entry in ``NOTIFIER_TYPES`` and its test.
"""

from __future__ import annotations

from actions.notifiers.alertmanager import AlertmanagerNotifier
from actions.notifiers.apprise import AppriseNotifier
from actions.notifiers.base import AnyNotifier, Delivery, HttpSessionFactory, Notifier
from actions.notifiers.discord import DiscordNotifier
from actions.notifiers.email import EmailNotifier
from actions.notifiers.file import FileNotifier
from actions.notifiers.opsgenie import OpsgenieNotifier
from actions.notifiers.pagerduty import PagerDutyNotifier
from actions.notifiers.slack import SlackNotifier
from actions.notifiers.teams import TeamsNotifier
from actions.notifiers.telegram import TelegramNotifier
from actions.notifiers.webhook import WebhookNotifier
from agent.config import NotifierConfigBase

__all__ = [
    "NOTIFIER_TYPES",
    "AlertmanagerNotifier",
    "AppriseNotifier",
    "Delivery",
    "DiscordNotifier",
    "EmailNotifier",
    "FileNotifier",
    "Notifier",
    "OpsgenieNotifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "TeamsNotifier",
    "TelegramNotifier",
    "WebhookNotifier",
    "build_notifier",
]

NOTIFIER_TYPES: dict[str, type[AnyNotifier]] = {
    WebhookNotifier.type: WebhookNotifier,
    FileNotifier.type: FileNotifier,
    SlackNotifier.type: SlackNotifier,
    DiscordNotifier.type: DiscordNotifier,
    TeamsNotifier.type: TeamsNotifier,
    TelegramNotifier.type: TelegramNotifier,
    EmailNotifier.type: EmailNotifier,
    PagerDutyNotifier.type: PagerDutyNotifier,
    OpsgenieNotifier.type: OpsgenieNotifier,
    AlertmanagerNotifier.type: AlertmanagerNotifier,
    AppriseNotifier.type: AppriseNotifier,
}


def build_notifier(config: NotifierConfigBase, http: HttpSessionFactory) -> AnyNotifier:
    """The notifier for one ``notifiers:`` entry of the config."""
    try:
        cls = NOTIFIER_TYPES[config.type]
    except KeyError:
        known = ", ".join(sorted(NOTIFIER_TYPES))
        raise ValueError(f"notifier {config.name!r}: unknown type {config.type!r} (known: {known})") from None
    return cls(config, http)
