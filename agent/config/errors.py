"""Config errors read like a compiler's: ``checks[0].port: must be between 1 and 65535, got 70000``.

pydantic reports problems in its own words and locations; this module turns each into the
project's: a path into the YAML file (``checks[0].heal.max_restarts``), a short message, and a
"did you mean ...?" for a misspelt key. The texts are part of the config contract (README,
"Errors"), so they are produced here and nowhere else.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from agent.config.types import ConfigModel

__all__ = [
    "KEYED_ERROR",
    "ConfigError",
    "KnownKeys",
    "Loc",
    "describe_kind",
    "format_path",
    "in_file_order",
    "keyed_error",
    "message",
    "relocate",
    "unknown_key",
]

Loc = tuple[str | int, ...]
"""Where in the file: ``("checks", 0, "port")``."""

KEYED_ERROR = "lifeguard_keyed"


class ConfigError(Exception):
    """The config cannot be used; ``errors`` holds every problem found, one ``path: message`` each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def keyed_error(key: str, text: str) -> PydanticCustomError:
    """An error a model validator raises about one of its keys, reported at ``<model path>.<key>``.

    For keys that are not fields of the model (``heal.restart_container`` names a heal kind), so
    pydantic cannot place the error itself.
    """
    return PydanticCustomError(KEYED_ERROR, "{text}", {"key": key, "text": text})


def relocate(exc: ValidationError, old: Loc, new: Loc, *, missing: str) -> ValidationError:
    """``exc`` with errors at ``old`` (a field's name) moved to ``new`` (the key the file spells it
    with), a missing value there reported as ``missing``."""
    details: list[InitErrorDetails] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        moved = loc[: len(old)] == old
        if moved:
            loc = (*new, *loc[len(old) :])
        if moved and error["type"] == "missing":
            kind: Any = PydanticCustomError(KEYED_ERROR, "{text}", {"text": missing})
        elif error["type"] == KEYED_ERROR:
            kind = PydanticCustomError(KEYED_ERROR, "{text}", error["ctx"])
        else:
            kind = error["type"]
        detail = InitErrorDetails(type=kind, loc=loc, input=error["input"])
        if "ctx" in error and not isinstance(kind, PydanticCustomError):
            detail["ctx"] = error["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data(exc.title, details, hide_input=True)


def message(error: Mapping[str, Any], model: type[BaseModel], known_keys: KnownKeys) -> str:
    """The project's one-line message for one pydantic error found below ``model``."""
    kind = error["type"]
    if kind == KEYED_ERROR:
        return str(error["ctx"]["text"])  # its "key", if any, is already in the path
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_key_at(model, error["loc"], known_keys)
    if kind in ("value_error", "assertion_error"):
        return str(error["ctx"]["error"])
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "expected a mapping"
    if kind == "list_type":
        return "expected a list"
    if kind == "string_type":
        return "expected a string"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "expected a whole number"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return "expected a number"
    if kind == "int_parsing_size":
        return "number too long"
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false"
    if kind == "invalid_key":
        return "invalid key (keys must be strings)"
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}"
    return str(error["msg"])


class KnownKeys:
    """What the did-you-mean and "only http checks have it" hints may suggest.

    ``check_models`` maps each check type to its config model; ``keys_of`` gives the YAML keys of
    a model (``ConfigModel.yaml_keys``: its fields, unless it says otherwise, as ``HealConfig`` does).
    """

    def __init__(self, check_models: Mapping[str, type[BaseModel]], context: Mapping[str, Any]) -> None:
        self.check_models = check_models
        self.context = context

    def keys_of(self, model: type[BaseModel]) -> list[str]:
        if issubclass(model, ConfigModel):
            return model.yaml_keys(self.context)
        return list(model.model_fields)


def unknown_key(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _unknown_key_at(model: type[BaseModel], loc: Sequence[Any], known_keys: KnownKeys) -> str:
    key = str(loc[-1])
    parent = _model_at(model, loc[:-1])
    if parent is None:
        return "unknown key"
    text = unknown_key(key, known_keys.keys_of(parent))
    checks = known_keys.check_models
    kind = next((kind for kind, other in checks.items() if other is parent), None)
    if text == "unknown key" and kind is not None:
        owners = [owner for owner, other in checks.items() if key in other.model_fields]
        if owners:
            return f"unknown key for a {kind} check (only {', '.join(owners)} checks have it)"
    return text


def _model_at(model: Any, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc`` below ``model``, if any."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if get_origin(annotation) in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


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


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(loc: Loc) -> str:
    """``("checks", 0, "port")`` as the user would point at it: ``checks[0].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out
