"""Load and validate ``config.yaml``: the one place where the product's config contract lives.

Loading reads the YAML, expands ``${VAR}`` references in string values, then validates each
section (and each check and notifier) separately with pydantic, so that one run reports every
mistake in the file, each as ``path: message`` like a compiler would. What comes out is frozen
and fully resolved: inherited ``defaults:``, built-in defaults, clamped timeouts and absolute
paths are already applied, so no consumer ever looks at ``defaults`` or the file again.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import types
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from agent import incidents
from agent.durations import format_duration, parse_duration

__all__ = [
    "CHECK_TYPES",
    "NOTIFIER_TYPES",
    "SEVERITIES",
    "AgentConfig",
    "ApiConfig",
    "CheckConfig",
    "Config",
    "ConfigError",
    "ContainerCheckConfig",
    "DefaultsConfig",
    "DeliveryConfig",
    "DockerConfig",
    "Expect",
    "FileNotifierConfig",
    "HealConfig",
    "HttpCheckConfig",
    "NotifierConfig",
    "RetentionConfig",
    "TcpCheckConfig",
    "WebhookNotifierConfig",
    "find_config",
    "format_duration",
    "load_config",
    "parse_duration",
]

DEFAULT_LOCATIONS: tuple[Path, ...] = (Path("config.yaml"), Path("/etc/lifeguard/config.yaml"))
SECTIONS = ("agent", "docker", "defaults", "checks", "notifiers")
SEVERITIES = incidents.SEVERITIES  # one list: the incident engine owns severities
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"


class ConfigError(Exception):
    """The config cannot be used; ``errors`` holds every problem found, one ``path: message`` each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --- value types -----------------------------------------------------------------------------


class _Inherited(float):
    """A duration taken from ``defaults:`` (already validated), as opposed to one written on the check.

    The timeout rule needs the difference: an inherited timeout longer than the interval is
    clamped, an explicit one is a mistake.
    """


def _seconds(value: Any) -> float:
    if isinstance(value, _Inherited):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r} (a unit is required, e.g. '{value}s')")
    return parse_duration(value)


def _positive_seconds(value: Any) -> float:
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


Duration = Annotated[float, BeforeValidator(_seconds)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_seconds)]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        if not value:
            raise ValueError("must not be empty")
        raise ValueError(f"invalid name {value!r} (use letters, digits, '_', '.' and '-')")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads `true` as 1: a port or a count of `true` is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true/false")
    return value


def _at_least_1(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be 1 or more, got {value}")
    return value


def _port_range(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be between 1 and 65535, got {value}")
    return value


_SEVERITY_ALIASES = {f"sev-{n}": name for n, name in enumerate(SEVERITIES, start=1)}


def _severity(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in SEVERITIES:
            return key
        if key in _SEVERITY_ALIASES:
            return _SEVERITY_ALIASES[key]
    raise ValueError(f"invalid severity {value!r} (expected one of: {', '.join(SEVERITIES)}, or SEV-1 to SEV-4)")


def _http_url(value: str) -> str:
    # The value is never echoed: webhook URLs (Slack's, for one) are secrets themselves.
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("expected an http:// or https:// URL")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _empty_is_none(value: Any) -> Any:
    # So `token: ${LIFEGUARD_API_TOKEN:-}` means "no token" rather than "the empty token".
    return None if isinstance(value, str) and not value.strip() else value


Name = Annotated[str, AfterValidator(_name)]
NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
Count = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_at_least_1)]
Port = Annotated[int, BeforeValidator(_no_bool), AfterValidator(_port_range)]
Severity = Annotated[Literal["critical", "high", "medium", "low"], BeforeValidator(_severity)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


def _base_dir(info: ValidationInfo) -> Path:
    return Path(_context(info).get("base_dir") or Path.cwd())


def _absolute(path: str | Path, base: Path) -> Path:
    # normpath, not resolve(): keep the user's symlinks as written.
    return Path(os.path.normpath(base / Path(path).expanduser()))


# --- models ----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # `api:` or `interval:` left empty in YAML is null: treat it as not written.
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (v is None and k in cls.model_fields)}
        return data


class ApiConfig(_Model):
    """The local HTTP API: health, metrics, incidents, status page."""

    # token comes before listen so that listen's validator can see it.
    token: Annotated[str | None, BeforeValidator(_empty_is_none)] = Field(None, repr=False)
    listen: str = "127.0.0.1:9810"
    public_url: Annotated[HttpUrl | None, BeforeValidator(_empty_is_none)] = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str, info: ValidationInfo) -> str:
        host, _ = _split_listen(value)
        if "token" in info.data and not info.data["token"] and not _is_loopback(host):
            raise ValueError(f"{value} is not loopback; set agent.api.token")
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. [::1]:{port}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RetentionConfig(_Model):
    """How long the store keeps what it no longer needs."""

    results_per_check: Count = 1000
    delivered_events: PositiveDuration = 7 * 86400.0
    resolved_evidence: PositiveDuration = 30 * 86400.0


class DeliveryConfig(_Model):
    """How the outbox retries an event a notifier failed to take."""

    retry_initial: PositiveDuration = 1.0
    retry_max: PositiveDuration = 300.0
    evidence_wait: Duration = 3.0

    @field_validator("retry_max")
    @classmethod
    def _not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("retry_initial")
        if initial is not None and value < initial:
            raise ValueError(f"{format_duration(value)} is shorter than retry_initial {format_duration(initial)}")
        return value


class AgentConfig(_Model):
    """The agent itself: identity, state, API, global switches."""

    name: NonEmptyStr = Field(default_factory=socket.gethostname)
    state_dir: Path = Field(Path("state"), validate_default=True)
    api: ApiConfig = Field(default_factory=ApiConfig)
    heal: bool = True
    max_concurrent_checks: Count = 100
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    @field_validator("state_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("state_dir")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        return _absolute(value, _base_dir(info))


_DOCKER_SCHEMES = ("unix", "tcp", "http", "https", "ssh", "npipe")


class DockerConfig(_Model):
    """How to reach the Docker engine."""

    url: str = Field(None, validate_default=True)  # type: ignore[assignment]  # filled from the environment
    timeout: PositiveDuration = 10.0

    @field_validator("url", mode="before")
    @classmethod
    def _from_environment(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            environ = _context(info).get("environ", os.environ)
            return environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL
        return value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in _DOCKER_SCHEMES or not rest:
            raise ValueError(f"expected a Docker URL such as {DEFAULT_DOCKER_URL} or tcp://127.0.0.1:2375")
        return value


class DefaultsConfig(_Model):
    """What every check inherits unless it says otherwise; here with the built-ins applied."""

    interval: PositiveDuration = 30.0
    timeout: PositiveDuration = 10.0
    open_after: Duration = 60.0
    resolve_after: Count = 2
    severity: Severity = "high"
    notify: list[str] = Field(None, validate_default=True)  # type: ignore[assignment]  # every notifier

    @field_validator("notify", mode="before")
    @classmethod
    def _every_notifier(cls, value: Any, info: ValidationInfo) -> Any:
        return list(_context(info).get("notifier_names", [])) if value is None else value


INHERITED = tuple(DefaultsConfig.model_fields)


class Expect(_Model):
    """What an HTTP response must look like to pass (default: any 2xx)."""

    status: list[int | str] | None = None
    body_contains: str | None = None
    max_latency: PositiveDuration | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("must list at least one status")
        return [_status(item) for item in items]


_STATUS_CLASS = re.compile(r"[1-5]xx")


def _status(item: Any) -> int | str:
    if isinstance(item, str) and item.strip().isdigit():
        item = int(item)
    if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
        return item
    if isinstance(item, str) and _STATUS_CLASS.fullmatch(item.strip().lower()):
        return item.strip().lower()
    raise ValueError(f"invalid status {item!r} (expected a code like 200 or a class like '2xx')")


class HealConfig(_Model):
    """Restart a container when an incident opens, within a budget."""

    restart_container: NonEmptyStr
    max_restarts: Count = 3
    within: PositiveDuration = 15 * 60.0
    cooldown: Duration = 30.0

    @property
    def kind(self) -> str:
        return "restart_container"

    @property
    def target(self) -> str:
        return self.restart_container


class _CheckBase(_Model):
    name: Name
    type: str
    interval: PositiveDuration
    timeout: PositiveDuration
    open_after: Duration
    resolve_after: Count
    severity: Severity
    notify: list[str]
    container: NonEmptyStr | None = None
    heal: HealConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        defaults = _context(info).get("defaults") or DefaultsConfig()
        merged = dict(data)
        for key in INHERITED:
            if merged.get(key) is None:
                value = getattr(defaults, key)
                merged[key] = _Inherited(value) if isinstance(value, float) else value
        merged["notify"] = list(merged["notify"]) if isinstance(merged["notify"], list) else merged["notify"]
        heal, container = merged.get("heal"), merged.get("container")
        if isinstance(heal, Mapping) and heal.get("restart_container") is None and isinstance(container, str):
            merged["heal"] = {**heal, "restart_container": container}
        return merged

    @field_validator("timeout", mode="wrap")
    @classmethod
    def _within_interval(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> float:
        seconds: float = handler(value)
        interval = info.data.get("interval")
        if interval is None or seconds <= interval:
            return seconds
        if isinstance(value, _Inherited):
            return interval
        raise ValueError(f"{format_duration(seconds)} is longer than the interval {format_duration(interval)}")


class HttpCheckConfig(_CheckBase):
    """Request a URL; pass on a 2xx or on what ``expect`` asks for."""

    type: Literal["http"]
    url: HttpUrl
    method: Annotated[
        Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], BeforeValidator(_upper)
    ] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    verify_tls: bool = True
    expect: Expect | None = None


class TcpCheckConfig(_CheckBase):
    """Open a TCP connection."""

    type: Literal["tcp"]
    host: NonEmptyStr
    port: Port


class ContainerCheckConfig(_CheckBase):
    """A container is running (and healthy, if it has a health check)."""

    type: Literal["container"]
    container: NonEmptyStr


class _NotifierBase(_Model):
    name: Name
    type: str
    timeout: PositiveDuration = 10.0
    give_up_after: PositiveDuration = 86400.0


class WebhookNotifierConfig(_NotifierBase):
    """POST each event as signed JSON (Standard Webhooks)."""

    type: Literal["webhook"]
    url: HttpUrl = Field(repr=False)  # chat webhook URLs carry their credential in the path
    secret: Annotated[str | None, BeforeValidator(_empty_is_none)] = Field(None, repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from agent.signing import decode_secret

        try:
            decode_secret(value)  # the same rule the webhook notifier signs with
            valid = True
        except ValueError:
            valid = False
        if not valid:
            # Never echo the value: it is a secret even when it is a malformed one.
            raise ValueError("must be 'whsec_' followed by base64 (the value is not shown)")
        return value


class FileNotifierConfig(_NotifierBase):
    """Append each event as one JSON line to a file."""

    type: Literal["file"]
    path: str = Field(None, validate_default=True)  # type: ignore[assignment]  # <state_dir>/events.jsonl

    @field_validator("path", mode="before")
    @classmethod
    def _absolute_path(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            state_dir = _context(info).get("state_dir") or _base_dir(info) / "state"
            return str(Path(state_dir) / "events.jsonl")
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("must not be empty")
            return str(_absolute(value, _base_dir(info)))
        return value


# One registry each: adding a check or notifier type adds its model here.
CHECK_TYPES: dict[str, type[_CheckBase]] = {
    "http": HttpCheckConfig,
    "tcp": TcpCheckConfig,
    "container": ContainerCheckConfig,
}
NOTIFIER_TYPES: dict[str, type[_NotifierBase]] = {
    "webhook": WebhookNotifierConfig,
    "file": FileNotifierConfig,
}

CheckConfig = Annotated[HttpCheckConfig | TcpCheckConfig | ContainerCheckConfig, Field(discriminator="type")]
NotifierConfig = Annotated[WebhookNotifierConfig | FileNotifierConfig, Field(discriminator="type")]


class Config(BaseModel):
    """A loaded, validated and fully resolved config file."""

    model_config = ConfigDict(frozen=True)

    path: Path
    agent: AgentConfig
    docker: DockerConfig
    defaults: DefaultsConfig
    checks: list[CheckConfig]
    notifiers: list[NotifierConfig]

    def check(self, name: str) -> CheckConfig:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def notifier(self, name: str) -> NotifierConfig:
        for notifier in self.notifiers:
            if notifier.name == name:
                return notifier
        raise KeyError(name)

    def summary(self) -> str:
        """The effective config in one line, for the start-up log."""
        counts = Counter(check.type for check in self.checks)
        kinds = ", ".join(f"{kind} {counts[kind]}" for kind in CHECK_TYPES if counts[kind])
        parts = [
            _plural(len(self.checks), "check") + (f" ({kinds})" if kinds else ""),
            _plural(len(self.notifiers), "notifier"),
            f"state in {self.agent.state_dir}",
            f"api on {self.agent.api.listen}",
        ]
        if not self.agent.heal:
            parts.append("heal off (dry run)")
        try:
            shown: Path = self.path.relative_to(Path.cwd())
        except ValueError:
            shown = self.path
        return f"{shown}: " + ", ".join(parts)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- loading ---------------------------------------------------------------------------------


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


Loc = tuple[str | int, ...]


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve a config file; ``ConfigError`` lists every problem in it."""
    environ = os.environ if environ is None else environ
    path = Path(os.path.normpath(Path(path).absolute()))
    data = _read_yaml(path)
    errors: list[tuple[Loc, str]] = []
    failed: set[Loc] = set()
    data = _expand(data, (), environ, errors, failed)

    def validate(model: type[BaseModel], raw: Any, loc: Loc, context: dict[str, Any]) -> Any:
        return _validate(model, raw, loc, context, errors, failed)

    for key in data:
        if key not in SECTIONS:
            errors.append(((str(key),), _unknown_key(str(key), SECTIONS)))

    base = {"base_dir": path.parent, "environ": environ}
    agent = validate(AgentConfig, _section(data, "agent", {}), ("agent",), base)
    docker = validate(DockerConfig, _section(data, "docker", {}), ("docker",), base)
    raw_checks = _list_section(data, "checks", errors)
    raw_notifiers = _list_section(data, "notifiers", errors)
    names = list(dict.fromkeys(_names(raw_notifiers)))
    raw_defaults = _section(data, "defaults", {})
    defaults = validate(DefaultsConfig, raw_defaults, ("defaults",), {**base, "notifier_names": names})
    if isinstance(raw_defaults, Mapping):
        errors.extend(_unknown_notifiers(raw_defaults.get("notify"), ("defaults", "notify"), names))

    context = {**base, "defaults": defaults or DefaultsConfig(notify=names)}
    checks = []
    for i, raw in enumerate(raw_checks):
        loc = ("checks", i)
        model = _pick_type(raw, loc, CHECK_TYPES, "check", errors, failed)
        checks.append(validate(model, raw, loc, context) if model else None)
        if isinstance(raw, Mapping):
            errors.extend(_unknown_notifiers(raw.get("notify"), (*loc, "notify"), names))
    errors.extend(_duplicates(raw_checks, "checks", "check"))

    state_dir = agent.state_dir if agent else path.parent / "state"
    context = {**base, "state_dir": state_dir}
    notifiers = []
    for i, raw in enumerate(raw_notifiers):
        model = _pick_type(raw, ("notifiers", i), NOTIFIER_TYPES, "notifier", errors, failed)
        notifiers.append(validate(model, raw, ("notifiers", i), context) if model else None)
    errors.extend(_duplicates(raw_notifiers, "notifiers", "notifier"))

    if errors:
        raise ConfigError([f"{_path(loc)}: {message}" for loc, message in _in_file_order(errors)])
    return Config.model_construct(
        path=path, agent=agent, docker=docker, defaults=defaults, checks=checks, notifiers=notifiers
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
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
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"{where}: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    if data is None:
        raise ConfigError([f"{path}: the file is empty (expected sections: {', '.join(SECTIONS)})"])
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}: the top level must be a mapping of sections ({', '.join(SECTIONS)}), not {_kind(data)}"]
        )
    return data


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


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


def _section(data: Mapping[Any, Any], key: str, empty: Any) -> Any:
    value = data.get(key)
    return empty if value is None else value


def _list_section(data: Mapping[Any, Any], key: str, errors: list[tuple[Loc, str]]) -> list[Any]:
    value = _section(data, key, [])
    if not isinstance(value, list):
        errors.append(((key,), f"expected a list of {key}, not {_kind(value)}"))
        return []
    return value


def _pick_type(
    raw: Any,
    loc: Loc,
    registry: Mapping[str, type[BaseModel]],
    what: str,
    errors: list[tuple[Loc, str]],
    failed: set[Loc],
) -> type[BaseModel] | None:
    if not isinstance(raw, Mapping):
        errors.append((loc, f"expected a mapping, not {_kind(raw)}"))
        return None
    kind = raw.get("type")
    known = ", ".join(registry)
    if kind is None:
        if (*loc, "type") not in failed:  # already reported as an unset environment variable
            errors.append(((*loc, "type"), f"required (expected one of: {known})"))
        return None
    model = registry.get(kind) if isinstance(kind, str) else None
    if model is None:
        errors.append(((*loc, "type"), f"unknown {what} type {kind!r} (expected one of: {known})"))
    return model


def _validate(
    model: type[BaseModel],
    raw: Any,
    loc: Loc,
    context: dict[str, Any],
    errors: list[tuple[Loc, str]],
    failed: set[Loc],
) -> Any:
    """Validate one piece of the file, recording its errors; on failure, return a best-effort
    instance built from the keys that were valid, so later pieces still get checked against it."""
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        bad_keys = set()
        for error in exc.errors(include_url=False):
            where: Loc = (*loc, *error["loc"])
            message = _message(error, model)
            if where[-1] == "[key]":  # pydantic's marker for a bad mapping key, not a real key
                where, message = where[:-1], f"invalid key: {message}"
            if error["loc"]:
                bad_keys.add(error["loc"][0])
            if not any(where[: len(f)] == f for f in failed):
                errors.append((where, message))
    if isinstance(raw, Mapping) and bad_keys:
        try:
            return model.model_validate({k: v for k, v in raw.items() if k not in bad_keys}, context=context)
        except ValidationError:
            return None
    return None


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "missing":
        if error["loc"][-2:] == ("heal", "restart_container"):
            return "required (the check has no container to default to)"
        return "required"
    if kind == "extra_forbidden":
        return _unknown_key_at(model, error["loc"])
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
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false"
    if kind == "invalid_key":
        return "invalid key (keys must be strings)"
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}"
    return str(error["msg"])


def _unknown_key(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _unknown_key_at(model: type[BaseModel], loc: Sequence[Any]) -> str:
    key = str(loc[-1])
    parent = _model_at(model, loc[:-1])
    if parent is None:
        return "unknown key"
    message = _unknown_key(key, list(parent.model_fields))
    kind = next((kind for kind, other in CHECK_TYPES.items() if other is parent), None)
    if message == "unknown key" and kind is not None:
        owners = [owner for owner, other in CHECK_TYPES.items() if key in other.model_fields]
        if owners:
            return f"unknown key for a {kind} check (only {', '.join(owners)} checks have it)"
    return message


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


def _in_file_order(errors: list[tuple[Loc, str]]) -> list[tuple[Loc, str]]:
    """Sections in their documented order, items by index; stable within one item."""

    def key(error: tuple[Loc, str]) -> tuple[int, int]:
        loc = error[0]
        section = SECTIONS.index(loc[0]) if loc and loc[0] in SECTIONS else -1
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
        return section, index

    return sorted(errors, key=key)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out

