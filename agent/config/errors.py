"""Config errors read like a compiler's: ``checks[0].port: must be between 1 and 65535, got 70000``.

The validator (``agent.config.model``) finds each problem with its place in the file; this module
has the shared words: a path into the YAML file (``checks[0].heal.max_restarts``), the error that
collects them all, and a "did you mean ...?" for a misspelt key. The texts are part of the config
contract (README, "Errors").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.config.model import ConfigModel, KeyedError, Loc, format_path, unknown_key

__all__ = [
    "ConfigError",
    "KnownKeys",
    "Loc",
    "describe_kind",
    "format_path",
    "in_file_order",
    "keyed_error",
    "unknown_key",
]


class ConfigError(Exception):
    """The config cannot be used; ``errors`` holds every problem found, one ``path: message`` each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def keyed_error(key: str, text: str) -> KeyedError:
    """An error a model validator raises about one of its keys, reported at ``<model path>.<key>``.

    For keys that are not fields of the model (``heal.restart_container`` names a heal kind).
    """
    return KeyedError(key, text)


class KnownKeys:
    """What the did-you-mean and "only http checks have it" hints may suggest.

    ``check_models`` maps each check type to its config model; ``keys_of`` gives the YAML keys of
    a model (``ConfigModel.yaml_keys``: its fields, unless it says otherwise, as ``HealConfig`` does).
    """

    def __init__(self, check_models: Mapping[str, type[ConfigModel]], context: Mapping[str, Any]) -> None:
        self.check_models = check_models
        self.context = context

    def keys_of(self, model: type[ConfigModel]) -> list[str]:
        return model.yaml_keys(self.context)

    def unknown_key_text(self, model: type[ConfigModel], key: str) -> str:
        """The message for ``key``, not a key of ``model``."""
        text = unknown_key(key, self.keys_of(model))
        checks = self.check_models
        kind = next((kind for kind, other in checks.items() if other is model), None)
        if text == "unknown key" and kind is not None:
            owners = [owner for owner, other in checks.items() if key in other.model_fields]
            if owners:
                return f"unknown key for a {kind} check (only {', '.join(owners)} checks have it)"
        return text


def describe_kind(value: Any) -> str:
    """What a value is, in words: ``a list``, ``a string``, ``a dict``."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def in_file_order(errors: list[tuple[Loc, str]], sections: Sequence[str]) -> list[tuple[Loc, str]]:
    """Sections in their documented order, items by index; stable within one item."""

    def key(error: tuple[Loc, str]) -> tuple[int, int]:
        loc = error[0]
        section = sections.index(loc[0]) if loc and loc[0] in sections else -1
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
        return section, index

    return sorted(errors, key=key)
