"""What a loaded config asks of the agent, answered from the plugins' own declarations.

Which values are secrets is declared on the config models (a ``Secret`` marker on the field),
and what a check, notifier or heal kind needs (a Docker engine, an HTTP client) on its class
(``needs``). So a new plugin's secrets are masked and its needs met without touching this
module, the daemon or the logging set-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from agent.config.model import ConfigModel
from agent.config.types import is_secret
from agent.redact import url_secrets

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import Config

__all__ = ["needs", "secret_values"]


def secret_values(config: Config | ConfigModel) -> list[str]:
    """Every configured value that must never be shown: the API token, webhook secrets, header
    values, the credentials inside any configured URL (user-info, token parameters), and whatever
    else a plugin's model marks ``Secret``. Empty values are left out. Works on the whole config
    or on one part of it (a notifier's own config)."""
    return list(dict.fromkeys(value for value in _secrets(config) if value))


def _secrets(model: ConfigModel) -> Iterator[str]:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if is_secret(field):
            for item in value if isinstance(value, (list, tuple)) else [value]:  # a list: each item
                if isinstance(item, str):
                    yield item
                    if "://" in item:  # a secret URL (a chat webhook): its credentials on their own too
                        yield from url_secrets(item)
            if isinstance(value, dict):
                yield from (item for item in value.values() if isinstance(item, str))
        else:
            yield from _secrets_below(value)


def _secrets_below(value: object) -> Iterator[str]:
    if isinstance(value, str) and "://" in value:
        yield from url_secrets(value)  # a URL's password or token, should it turn up on its own
    elif isinstance(value, ConfigModel):
        yield from _secrets(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secrets_below(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_below(item)


def needs(config: Config) -> frozenset[str]:
    """What the agent must provide for this config: ``"docker"``, ``"http"``.

    Docker when a check type or heal kind needs it, or a check names a ``container`` (its
    evidence includes the container's logs and state).
    """
    from actions.healers import HEALERS
    from actions.notifiers import NOTIFIER_TYPES
    from checks import CHECK_TYPES

    found: set[str] = set()
    for check in config.checks:
        found |= CHECK_TYPES[check.type].needs
        if check.heal is not None:
            found |= HEALERS[check.heal.kind].needs
        if check.container:
            found.add("docker")
    for notifier in config.notifiers:
        found |= NOTIFIER_TYPES[notifier.type].needs
    if config.docker.discover.enabled:
        found.add("docker")
    return frozenset(found)
