"""From a file on disk to a ``Config``: read the YAML, expand ``${VAR}``, validate piece by piece.

Each section, check and notifier is validated on its own, so one run reports every mistake in
the file. Which model validates a check or notifier comes from the plugin registries
(``checks.CHECK_TYPES``, ``actions.notifiers.NOTIFIER_TYPES``, ``actions.healers.HEALERS``),
read when a file is loaded rather than when this module is imported: the plugins import
``agent.config`` for their base models, and a test may register a type of its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agent.config.depends import dependency_errors
from agent.config.errors import (
    ConfigError,
    KnownKeys,
    Loc,
    describe_kind,
    format_path,
    in_file_order,
    unknown_key,
)
from agent.config.model import Invalid
from agent.config.policies import DEFAULT_POSTMORTEM_AFTER, PoliciesConfig
from agent.config.report import ReportConfig
from agent.config.sections import (
    AgentConfig,
    CheckConfigBase,
    Config,
    DefaultsConfig,
    DockerConfig,
    HealKind,
    MaintenanceConfig,
    NotifierConfigBase,
    RouteConfig,
)
from agent.config.types import ConfigModel, PositiveDuration
from agent.routing import matches, route

__all__ = [
    "DEFAULT_LOCATIONS",
    "MAX_ALIAS_VALUES",
    "MAX_DEPTH",
    "MAX_NUMBER_DIGITS",
    "SECTIONS",
    "find_config",
    "load_config",
]

DEFAULT_LOCATIONS: tuple[Path, ...] = (Path("config.yaml"), Path("/etc/lifeguard/config.yaml"))
SECTIONS = (
    "agent", "docker", "defaults", "checks", "notifiers", "routes", "policies", "postmortem_after", "maintenance",
    "report",
)


def find_config(explicit: str | Path | None, *, candidates: Sequence[Path] = DEFAULT_LOCATIONS) -> Path:
    """The config file to load: the one asked for, else the first of ``candidates`` that exists."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError([f"{path}: no such file"])
        return path
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise ConfigError([f"no config file found (tried {tried}); pass one with --config"])


M = TypeVar("M", bound=ConfigModel)


class _Registries:
    """The config model of every registered check and notifier type, and the heal kinds."""

    def __init__(self) -> None:
        from actions.healers import HEALERS
        from actions.notifiers import NOTIFIER_TYPES
        from checks import CHECK_TYPES

        # Looked up per type the file uses: a type's module is imported only when it is configured.
        self.checks = _ConfigModels[CheckConfigBase](CHECK_TYPES)
        self.notifiers = _ConfigModels[NotifierConfigBase](NOTIFIER_TYPES)
        self.heal_kinds: Mapping[str, HealKind] = HEALERS  # lazy: a kind is imported when named


class _ConfigModels(Mapping[str, type[M]]):
    """The config model of each registered check or notifier type, resolved when asked for."""

    def __init__(self, registry: Mapping[str, Any]) -> None:
        self._registry = registry  # type name -> plugin class (with its ``config_model``)

    def __getitem__(self, name: str) -> type[M]:
        model: type[M] = self._registry[name].config_model
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)


class _Collector:
    """Every problem found so far, and the places whose value already failed (not to report twice)."""

    def __init__(self, known_keys: KnownKeys) -> None:
        self.errors: list[tuple[Loc, str]] = []
        self.failed: set[Loc] = set()
        self.known_keys = known_keys

    def validate(self, model: type[ConfigModel], raw: Any, loc: Loc, context: dict[str, Any]) -> Any:
        """Validate one piece of the file, recording its errors; on failure, return a best-effort
        instance built from the keys that were valid, so later pieces still get checked against it."""
        context = {**context, "unknown_key_text": self.known_keys.unknown_key_text}
        try:
            return model.model_validate(raw, context=context)
        except Invalid as exc:
            bad_keys = set()
            for inner, text in exc.errors:
                where: Loc = (*loc, *inner)
                if inner:
                    bad_keys.add(inner[0])
                if not any(where[: len(f)] == f for f in self.failed):
                    self.errors.append((where, text))
        if isinstance(raw, Mapping) and bad_keys:
            try:
                return model.model_validate({k: v for k, v in raw.items() if k not in bad_keys}, context=context)
            except Invalid:
                return None
        return None

    def pick_type(
        self, raw: Any, loc: Loc, registry: Mapping[str, type[ConfigModel]], what: str
    ) -> type[ConfigModel] | None:
        if not isinstance(raw, Mapping):
            self.errors.append((loc, f"expected a mapping, not {describe_kind(raw)}"))
            return None
        kind = raw.get("type")
        known = ", ".join(registry)
        if kind is None:
            if (*loc, "type") not in self.failed:  # already reported as an unset environment variable
                self.errors.append(((*loc, "type"), f"required (expected one of: {known})"))
            return None
        model = registry.get(kind) if isinstance(kind, str) else None
        if model is None:
            self.errors.append(((*loc, "type"), f"unknown {what} type {kind!r} (expected one of: {known})"))
        return model


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve a config file; ``ConfigError`` lists every problem in it."""
    environ = os.environ if environ is None else environ
    path = Path(os.path.normpath(Path(path).absolute()))
    data = _read_yaml(path)
    registries = _Registries()
    base: dict[str, Any] = {"base_dir": path.parent, "environ": environ, "heal_kinds": registries.heal_kinds}
    found = _Collector(KnownKeys(registries.checks, base))
    data = _expand(data, (), environ, found.errors, found.failed)
    validate = found.validate

    for key in data:
        if key not in SECTIONS:
            found.errors.append(((str(key),), unknown_key(str(key), SECTIONS)))

    agent = validate(AgentConfig, _section(data, "agent", {}), ("agent",), base)
    docker = validate(DockerConfig, _section(data, "docker", {}), ("docker",), base)
    raw_checks = _list_section(data, "checks", found.errors)
    raw_notifiers = _list_section(data, "notifiers", found.errors)
    names = list(dict.fromkeys(_names(raw_notifiers)))
    raw_defaults = _section(data, "defaults", {})
    defaults = validate(DefaultsConfig, raw_defaults, ("defaults",), {**base, "notifier_names": names})
    if isinstance(raw_defaults, Mapping):
        found.errors.extend(_unknown_notifiers(raw_defaults.get("notify"), ("defaults", "notify"), names))

    context = {**base, "defaults": defaults or DefaultsConfig(notify=names)}
    checks = []
    for i, raw in enumerate(raw_checks):
        loc = ("checks", i)
        model = found.pick_type(raw, loc, registries.checks, "check")
        checks.append(validate(model, raw, loc, context) if model else None)
        if isinstance(raw, Mapping):
            found.errors.extend(_unknown_notifiers(raw.get("notify"), (*loc, "notify"), names))
    found.errors.extend(_duplicates(raw_checks, "checks", "check"))
    found.errors.extend(dependency_errors(raw_checks))

    state_dir = agent.state_dir if agent else path.parent / "state"
    context = {**base, "state_dir": state_dir}
    notifiers = []
    for i, raw in enumerate(raw_notifiers):
        model = found.pick_type(raw, ("notifiers", i), registries.notifiers, "notifier")
        notifiers.append(validate(model, raw, ("notifiers", i), context) if model else None)
    found.errors.extend(_duplicates(raw_notifiers, "notifiers", "notifier"))

    routes = []
    for i, raw in enumerate(_list_section(data, "routes", found.errors)):
        loc = ("routes", i)
        routes.append(validate(RouteConfig, raw, loc, base))
        if isinstance(raw, Mapping):
            found.errors.extend(_unknown_notifiers(raw.get("notify"), (*loc, "notify"), names))
    raw_policies = _section(data, "policies", {})
    policies = validate(PoliciesConfig, raw_policies, ("policies",), base)
    found.errors.extend(_unknown_step_notifiers(raw_policies, names))
    postmortem_after = validate(_PostmortemAfter, {"postmortem_after": data.get("postmortem_after")}, (), base)
    maintenance = [
        validate(MaintenanceConfig, raw, ("maintenance", i), base)
        for i, raw in enumerate(_list_section(data, "maintenance", found.errors))
    ]
    found.errors.extend(_duplicates(_list_section(data, "maintenance", []), "maintenance", "maintenance window"))
    report = validate(ReportConfig, _section(data, "report", {}), ("report",), base)

    explicit = set(_names([raw for raw in raw_checks if isinstance(raw, Mapping) and raw.get("notify") is not None]))
    valid_checks = [c for c in checks if c is not None]
    valid_routes = [r for r in routes if r is not None]
    checks = [_routed(c, valid_routes, explicit) if c is not None else None for c in checks]
    for i, candidate in enumerate(routes):
        if candidate is not None and valid_checks and not any(matches(candidate.match, c) for c in valid_checks):
            found.errors.append((("routes", i, "match"), "matches none of the configured checks"))

    if found.errors:
        raise ConfigError([f"{format_path(loc)}: {text}" for loc, text in in_file_order(found.errors, SECTIONS)])
    # Without errors every piece validated: no None is left in either list.
    return Config(
        path=path,
        agent=agent,
        docker=docker,
        defaults=defaults,
        checks=[c for c in checks if c is not None],
        notifiers=[n for n in notifiers if n is not None],
        routes=[r for r in routes if r is not None],
        policies=policies or PoliciesConfig(),
        postmortem_after=postmortem_after.postmortem_after if postmortem_after else DEFAULT_POSTMORTEM_AFTER,
        maintenance=[m for m in maintenance if m is not None],
        report=report or ReportConfig(),
    )


class _PostmortemAfter(ConfigModel):
    """The top-level ``postmortem_after``: any incident open longer than this needs a postmortem."""

    postmortem_after: PositiveDuration = DEFAULT_POSTMORTEM_AFTER


def _unknown_step_notifiers(raw: Any, names: Sequence[str]) -> list[tuple[Loc, str]]:
    """Notifiers the file's escalation steps name that are not configured (the shipped steps'
    ``secondary`` and ``lead`` are not checked: a config that never names them still loads)."""
    found: list[tuple[Loc, str]] = []
    if not isinstance(raw, Mapping):
        return found
    for severity, policy in raw.items():
        steps = policy.get("escalate") if isinstance(policy, Mapping) else None
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, Mapping):
                loc = ("policies", str(severity), "escalate", i, "notify")
                found.extend(_unknown_notifiers(step.get("notify"), loc, names))
    return found


def _routed(check: CheckConfigBase, routes: list[RouteConfig], explicit: set[str]) -> CheckConfigBase:
    """The check with the notifiers its routes give it (its own ``notify`` wins)."""
    if check.name in explicit or not routes:
        return check
    routed = route(check, routes, check.notify)
    return check if routed is None else check.model_copy(update={"notify": routed})


# --- reading the file ----------------------------------------------------------------------------


MAX_DEPTH = 50
"""Deepest nesting of lists and mappings read; a config needs about six levels."""

MAX_ALIAS_VALUES = 100_000
"""Values that aliases (``*name``) may add in all, counted as they are resolved: enough to share
headers across thousands of checks, far too few for an alias bomb ("billion laughs")."""

MAX_NUMBER_DIGITS = 100
"""Longest whole number read; no setting takes more than a few digits."""


_TAG_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "timestamp": "a date"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses what would hang, exhaust or crash the reading of a config.

    Duplicate keys (YAML would silently keep the last one), an alias inside the value it names (a
    loop), nesting deeper than ``MAX_DEPTH``, aliases that would add more than ``MAX_ALIAS_VALUES``
    values, and a scalar its tag cannot read (``2001-13-45``, ``!!int x``): each becomes a
    ``MarkedYAMLError`` at the line and column of the offending text.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> values in it once aliases are resolved
        self._depth = 0
        self._aliased = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self._next_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is reported by the composer itself
                size = self._sizes.get(id(target))
                if size is None:  # still being composed: the alias sits inside its own value
                    raise yaml.composer.ComposerError(
                        None, None, f"alias *{event.anchor} refers to a value that contains it", event.start_mark
                    )
                self._aliased += size
                if self._aliased > MAX_ALIAS_VALUES:
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (an alias bomb?)",
                        event.start_mark,
                    )
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self._next_event().start_mark
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._sizes[id(node)] = self._size(node)
        return node

    def _next_event(self) -> Any:
        return self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the PyYAML stubs

    def _size(self, node: yaml.Node) -> int:
        """1 for the node and its children's sizes, each already known (children are composed first)."""
        if isinstance(node, yaml.SequenceNode):
            return 1 + sum(self._sizes[id(child)] for child in node.value)
        if isinstance(node, yaml.MappingNode):
            return 1 + sum(self._sizes[id(key)] + self._sizes[id(value)] for key, value in node.value)
        return 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int":
            if sum(char.isalnum() for char in node.value) > MAX_NUMBER_DIGITS:
                raise yaml.constructor.ConstructorError(
                    None, None, f"number too long (more than {MAX_NUMBER_DIGITS} digits)", node.start_mark
                )
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError):
            # SafeConstructor's own converters fail with plain exceptions: `2001-13-45`, `!!int x`.
            tag = str(node.tag).rsplit(":", 1)[-1]
            kind = _TAG_WORDS.get(tag, f"!!{tag}")
            text = node.value if isinstance(node.value, str) else ""
            shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {shown} as {kind} (quote it to make it a string)", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):  # `!!set a`: a mapping tag on a scalar or a list
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.tag.rpartition(':')[2]} expects a mapping here", node.start_mark
            )
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                first = seen[key_node.value].line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r} (first at line {first})", key_node.start_mark
                )
            seen[key_node.value] = key_node.start_mark
        return super().construct_mapping(node, deep)


def _parse(text: str) -> Any:
    loader = _Loader(text)  # the reader checks every character here already
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"{where}: {problem}"]) from None
    except yaml.reader.ReaderError as exc:
        # The reader counts characters from the start; people count lines and columns.
        at = int(exc.position)
        line, column = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        problem = f"character U+{ord(char):04X} is not allowed (YAML allows only printable characters)"
        raise ConfigError([f"{path}:{line}:{column}: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    if data is None:
        raise ConfigError([f"{path}: the file is empty (expected sections: {', '.join(SECTIONS)})"])
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}: the top level must be a mapping of sections ({', '.join(SECTIONS)}), not {describe_kind(data)}"]
        )
    return data


# ${VAR}, ${VAR:-default}, and $${ for a literal ${. An unclosed ${ is matched last, to report it.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _interpolate(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            problems.append("unclosed '${' (write '$${' for a literal '${')")
            return match.group(0)
        reference = _VARIABLE.fullmatch(body)
        if reference is None:
            problems.append(f"invalid variable reference '${{{body}}}'")
            return match.group(0)
        name, default = reference.groups()
        value = environ.get(name)
        if default is not None and not value:
            return default
        if value is None:
            problems.append(f"environment variable {name} is not set")
            return match.group(0)
        return value

    return _REFERENCE.sub(replace, text), problems


def _expand(
    node: Any, loc: Loc, environ: Mapping[str, str], errors: list[tuple[Loc, str]], failed: set[Loc]
) -> Any:
    """Interpolate every string value; a value that cannot be expanded becomes None and is reported."""
    if isinstance(node, str):
        text, problems = _interpolate(node, environ)
        if "\0" in text:  # no path, name, URL or header can hold one: the OS and HTTP refuse it
            problems.append("must not contain a NUL character")
        if problems:
            errors.extend((loc, problem) for problem in problems)
            failed.add(loc)
            return None
        return text
    if isinstance(node, dict):
        return {key: _expand(value, (*loc, key), environ, errors, failed) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand(value, (*loc, i), environ, errors, failed) for i, value in enumerate(node)]
    return node


# --- checks across pieces ------------------------------------------------------------------------


def _section(data: Mapping[Any, Any], key: str, empty: Any) -> Any:
    value = data.get(key)
    return empty if value is None else value


def _list_section(data: Mapping[Any, Any], key: str, errors: list[tuple[Loc, str]]) -> list[Any]:
    value = _section(data, key, [])
    if not isinstance(value, list):
        errors.append(((key,), f"expected a list of {key}, not {describe_kind(value)}"))
        return []
    return value


def _unknown_notifiers(value: Any, loc: Loc, names: Sequence[str]) -> list[tuple[Loc, str]]:
    if not isinstance(value, list):
        return []
    known = f"known: {', '.join(names)}" if names else "no notifiers are configured"
    unknown = [item for item in value if isinstance(item, str) and item not in names]
    return [(loc, f"no notifier named {item!r} ({known})") for item in unknown]


def _names(items: Sequence[Any]) -> list[str]:
    return [item["name"] for item in items if isinstance(item, Mapping) and isinstance(item.get("name"), str)]


def _duplicates(items: Sequence[Any], section: str, what: str) -> list[tuple[Loc, str]]:
    first: dict[str, int] = {}
    found: list[tuple[Loc, str]] = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in first:
            found.append(((section, i, "name"), f"duplicate {what} name {name!r} (also {section}[{first[name]}])"))
        else:
            first[name] = i
    return found
