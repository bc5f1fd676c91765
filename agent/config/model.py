"""The base of every config model, and the validator that reports every mistake with its path.

A config model is a frozen ``msgspec.Struct`` (compact: an http check's 25 fields in 232 bytes; msgspec costs
~0.5 MB to import where pydantic cost ~8.6 MB in an agent that idles at ~45 MB). msgspec checks
types but stops at the first error; a config is refused with *every* error's path, so the walk
over a model's fields is done here, field by field, in the order the model declares them:

- a field's annotation may carry ``Before(fn)`` and ``After(fn)`` in its ``Annotated[...]``
  metadata: ``fn`` runs on the value before (raw, as read from YAML) or after the type check, and
  raises ``ValueError`` with the project's message (``agent.config.types`` has the shared ones);
- a model may override ``prepare(data)`` (the raw mapping, before its fields: defaults from the
  context, a key renamed) and ``__post_init__`` (checks across fields, once they are all valid);
- ``KeyedError(key, text)`` reports at ``<model path>.<key>``; a plain ``ValueError`` at the model.

What a validator needs from the loader (the config file's folder, ``defaults:``, the environment)
is in ``context()``, set by ``validating(context)`` around a validation.
"""

from __future__ import annotations

import copy
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    TypeVar,
    Union,
    dataclass_transform,
    get_args,
    get_origin,
    get_type_hints,
)

import msgspec

__all__ = [
    "After",
    "Before",
    "ConfigModel",
    "FieldSpec",
    "Invalid",
    "KeyedError",
    "Loc",
    "Secret",
    "context",
    "field",
    "format_path",
    "unknown_key",
    "validating",
]

Loc = tuple[str | int, ...]
"""Where in the file: ``("checks", 0, "port")``."""

field = msgspec.field

M = TypeVar("M", bound="ConfigModel")


@dataclass(frozen=True, slots=True)
class Before:
    """Annotation metadata: ``fn(raw value)`` runs before the type check (may convert)."""

    fn: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class After:
    """Annotation metadata: ``fn(value)`` runs after the type check (range checks, normalizing)."""

    fn: Callable[[Any], Any]


class _SecretMarker:
    """Annotation metadata: the value is a credential (logs mask it, reprs leave it out)."""

    def __repr__(self) -> str:
        return "Secret"


Secret = _SecretMarker()
"""Put in a field's ``Annotated[...]`` metadata; ``agent.plugins.secret_values`` collects the field."""


class KeyedError(ValueError):
    """A problem with one key of a model: reported at ``<model path>.<key>`` (the key need not be a
    field: ``heal.restart_container`` names a heal kind; a tuple is a path: ``("headers", name)``)."""

    def __init__(self, key: str | int | tuple[str | int, ...], text: str) -> None:
        super().__init__(text)
        self.key = key
        self.text = text

    def at(self, loc: Loc) -> Loc:
        """Where it is reported when the model is at ``loc`` (a tuple key is a path below it)."""
        return (*loc, *self.key) if isinstance(self.key, tuple) else (*loc, self.key)


class Invalid(ValueError):
    """A validation found problems; ``errors`` holds each as ``(loc, message)``, in file order."""

    def __init__(self, errors: list[tuple[Loc, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{format_path(loc)}: {text}" for loc, text in errors))


_CONTEXT: ContextVar[Mapping[str, Any] | None] = ContextVar("lifeguard_config_context", default=None)


def context() -> Mapping[str, Any]:
    """What the loader passes down to every validator (empty when a model is built directly)."""
    return _CONTEXT.get() or {}


@contextmanager
def validating(ctx: Mapping[str, Any] | None) -> Iterator[None]:
    token = _CONTEXT.set(ctx or {})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a model: its attribute name, its key in the file, and what it takes."""

    name: str
    key: str
    annotation: Any
    required: bool
    default: Any
    default_factory: Any
    metadata: tuple[Any, ...]

    @property
    def alias(self) -> str | None:
        return self.key if self.key != self.name else None


class _FieldsDescriptor:
    """``Model.model_fields``: the field specs, by attribute name, in declaration order."""

    def __get__(self, obj: Any, owner: type[ConfigModel]) -> dict[str, FieldSpec]:
        return owner._specs()


class _ModelMeta(msgspec.StructMeta):
    """Every model's fields are keyword-only (a subclass adds required keys after optional ones)."""

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> Any:
        kwargs.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **kwargs)


# For type checkers: fields are keyword-only and frozen here too (msgspec.Struct's own transform
# would otherwise win over the metaclass's).
@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(msgspec.field,))
class ConfigModel(msgspec.Struct, metaclass=_ModelMeta, frozen=True, forbid_unknown_fields=True):
    """Base of every config model: frozen, strict about unknown keys, silent about secret values."""

    model_fields: ClassVar[_FieldsDescriptor] = _FieldsDescriptor()

    @classmethod
    def prepare(cls, data: Any) -> Any:
        """The raw mapping, adjusted before its fields are validated (``context()`` is available)."""
        return data

    @classmethod
    def relocate(cls, loc: Loc, errors: list[tuple[Loc, str]], data: Any) -> list[tuple[Loc, str]]:
        """The model's ``errors`` (found at ``loc`` and below in the prepared ``data``) where the
        file has them, when ``prepare`` renamed keys."""
        return errors

    @classmethod
    def yaml_keys(cls, context: Mapping[str, Any]) -> list[str]:
        """The keys the model takes in the file (its fields, unless it says otherwise), for hints."""
        return [spec.key for spec in cls.model_fields.values()]

    @classmethod
    def _specs(cls) -> dict[str, FieldSpec]:
        specs = _SPECS.get(cls)
        if specs is None:
            hints = get_type_hints(cls, include_extras=True)
            specs = {}
            for info in msgspec.structs.fields(cls):
                annotation = hints[info.name]
                metadata = get_args(annotation)[1:] if get_origin(annotation) is Annotated else ()
                specs[info.name] = FieldSpec(
                    name=info.name,
                    key=info.encode_name,
                    annotation=annotation,
                    required=info.required,
                    default=info.default,
                    default_factory=info.default_factory,
                    metadata=tuple(metadata),
                )
            _SPECS[cls] = specs
        return specs

    @classmethod
    def model_validate(cls: type[M], data: Any, *, context: Mapping[str, Any] | None = None) -> M:
        """``data`` (a mapping as read from YAML) as this model; ``Invalid`` lists every problem."""
        errors: list[tuple[Loc, str]] = []
        with validating(context if context is not None else _CONTEXT.get()):
            found = _model(cls, data, (), errors)
        if errors or found is None:
            raise Invalid(errors or [((), "invalid")])
        return found

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None) -> M:
        """A copy with ``update``'s fields replaced (not validated again: ``__post_init__`` is not run)."""
        copied = copy.copy(self)
        for name, value in (update or {}).items():
            if name not in self.__struct_fields__:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            msgspec.structs.force_setattr(copied, name, value)
        return copied

    def model_dump(self) -> dict[str, Any]:
        """The fields as plain values (nested models as dicts), by attribute name."""
        return {name: _dump(getattr(self, name)) for name in self.__struct_fields__}

    def __repr__(self) -> str:
        specs = type(self).model_fields
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__struct_fields__
            if not any(item is Secret for item in specs[name].metadata)
        )
        return f"{type(self).__name__}({shown})"


_SPECS: dict[type[ConfigModel], dict[str, FieldSpec]] = {}


def _dump(value: Any) -> Any:
    if isinstance(value, ConfigModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {key: _dump(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, int, float, Path, datetime)):
        return value
    return str(value)  # a value parsed from its text (a condition): dumped as that text


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


def unknown_key(key: str, known: Sequence[str]) -> str:
    """The message for a key the file has and the model does not, with the closest known one."""
    from difflib import get_close_matches  # only when there is a mistake to hint at

    close = get_close_matches(key, known, n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


# --- the walk --------------------------------------------------------------------------------------


def _unknown(model: type[ConfigModel], key: Any) -> str:
    hint: Callable[[type[ConfigModel], str], str] | None = context().get("unknown_key_text")
    if hint is not None:
        return hint(model, str(key))
    return unknown_key(str(key), model.yaml_keys(context()))


def _model(model: type[M], raw: Any, loc: Loc, errors: list[tuple[Loc, str]]) -> M | None:
    if isinstance(raw, model):
        return raw
    try:
        raw = model.prepare(raw)
    except (ValueError, TypeError) as exc:
        errors.append(_problem(exc, loc))
        return None
    if not isinstance(raw, Mapping):
        errors.append((loc, "expected a mapping"))
        return None
    specs = model.model_fields
    values: dict[str, Any] = {}
    before = len(errors)
    by_key = {spec.key: spec for spec in specs.values()}
    for spec in specs.values():
        value = raw.get(spec.key)
        if value is None:  # `interval:` left empty in YAML is null: as if not written
            if spec.required:
                errors.append(((*loc, spec.key), "required"))
            continue
        converted = _value(spec.annotation, value, (*loc, spec.key), errors)
        if converted is not _FAILED:
            values[spec.name] = converted
    found: M | None = None
    if len(errors) == before:  # every field valid: the checks across fields (unknown keys aside)
        try:
            found = model(**values)
        except (ValueError, TypeError) as exc:
            errors.append(_problem(exc, loc))
    for key in raw:
        if key not in by_key:
            text = _unknown(model, key) if isinstance(key, str) else "invalid key (keys must be strings)"
            errors.append(((*loc, key), text))
    if len(errors) == before:
        return found
    errors[before:] = model.relocate(loc, errors[before:], raw)
    return None


class _Failed:
    def __repr__(self) -> str:
        return "<failed>"


_FAILED: Any = _Failed()


def _value(annotation: Any, value: Any, loc: Loc, errors: list[tuple[Loc, str]]) -> Any:
    befores: list[Callable[[Any], Any]] = []
    afters: list[Callable[[Any], Any]] = []
    if get_origin(annotation) is Annotated:  # nested Annotated[...] are flattened into one
        args = get_args(annotation)
        annotation = args[0]
        befores = [m.fn for m in args[1:] if isinstance(m, Before)]
        afters = [m.fn for m in args[1:] if isinstance(m, After)]
    value = _through(reversed(befores), value, loc, errors)  # the last written runs first: it wraps the others
    if value is not _FAILED:
        value = _typed(annotation, value, loc, errors)
    return value if value is _FAILED else _through(afters, value, loc, errors)


def _through(fns: Iterable[Callable[[Any], Any]], value: Any, loc: Loc, errors: list[tuple[Loc, str]]) -> Any:
    """``value`` passed through each of ``fns``, or ``_FAILED`` with the problem recorded."""
    try:
        for fn in fns:
            value = fn(value)
    except (ValueError, TypeError) as exc:
        errors.append(_problem(exc, loc))
        return _FAILED
    return value


def _problem(exc: ValueError | TypeError, loc: Loc) -> tuple[Loc, str]:
    """Where and what: a ``KeyedError`` at its key below ``loc``, any other at ``loc`` itself."""
    return (exc.at(loc), exc.text) if isinstance(exc, KeyedError) else (loc, str(exc))


def _typed(annotation: Any, value: Any, loc: Loc, errors: list[tuple[Loc, str]]) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = get_args(annotation)
        if value is None and type(None) in members:
            return None
        options = [m for m in members if m is not type(None)]
        if len(options) == 1:
            return _value(options[0], value, loc, errors)
        first: list[tuple[Loc, str]] | None = None
        for option in options:
            scratch: list[tuple[Loc, str]] = []
            found = _value(option, value, loc, scratch)
            if not scratch:
                return found
            first = scratch if first is None else first
        errors.extend(first or [(loc, "invalid value")])
        return _FAILED
    if origin is list:
        if not isinstance(value, list):
            errors.append((loc, "expected a list"))
            return _FAILED
        (item,) = get_args(annotation) or (Any,)
        before = len(errors)
        out = [_value(item, v, (*loc, i), errors) for i, v in enumerate(value)]
        return _FAILED if len(errors) > before else out
    if origin is dict:
        if not isinstance(value, Mapping):
            errors.append((loc, "expected a mapping"))
            return _FAILED
        _, item = get_args(annotation) or (str, Any)
        before = len(errors)
        mapping: dict[str, Any] = {}
        for key, v in value.items():
            if not isinstance(key, str):
                errors.append(((*loc, key), "invalid key (keys must be strings)"))
                continue
            mapping[key] = _value(item, v, (*loc, key), errors)
        return _FAILED if len(errors) > before else mapping
    if origin is Literal:
        allowed = get_args(annotation)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        errors.append((loc, f"expected {_one_of(allowed)}"))
        return _FAILED
    if isinstance(annotation, type) and issubclass(annotation, ConfigModel):
        found = _model(annotation, value, loc, errors)
        return _FAILED if found is None else found
    text = _leaf(annotation, value)
    if isinstance(text, _Problem):
        errors.append((loc, text.text))
        return _FAILED
    return text


@dataclass(frozen=True, slots=True)
class _Problem:
    text: str


_TRUE = {"true", "yes", "on", "y", "t", "1"}
_FALSE = {"false", "no", "off", "n", "f", "0"}


def _leaf(kind: Any, value: Any) -> Any:
    """``value`` as a ``kind`` (lax, as a value read from an environment variable is a string), or
    a ``_Problem`` in the project's words."""
    if kind is Any or kind is object:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        return _Problem("expected true or false")
    if kind is int:
        if isinstance(value, int):
            return int(value) if isinstance(value, bool) else value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if len(text) > 4300:
                return _Problem("number too long")
            try:
                return int(text)
            except ValueError:
                pass
        return _Problem("expected a whole number")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        return _Problem("expected a number")
    if kind is str:
        return value if isinstance(value, str) else _Problem("expected a string")
    if kind is Path:
        if isinstance(value, Path):
            return value
        return Path(value) if isinstance(value, str) else _Problem("expected a path (a string)")
    if kind is datetime:
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return msgspec.convert(value, datetime, strict=False)
            except msgspec.ValidationError:
                pass
        return _Problem("expected a date and time such as 2026-12-01T02:00:00Z")
    if isinstance(kind, type):
        return value if isinstance(value, kind) else _Problem(f"expected {kind.__name__}")
    return value


def _one_of(allowed: tuple[Any, ...]) -> str:
    shown = [repr(a) for a in allowed]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"

