"""The sections of ``config.yaml`` and the keys every check and notifier has, whatever its type.

What a type adds (an http check's ``url``, a webhook's ``secret``) is its plugin's business and
lives next to its code: ``HttpCheckConfig`` in ``checks/http.py`` subclasses ``CheckConfigBase``
here. ``heal`` is generic in the same way: the key that names a registered heal kind
(``restart_container``) gives ``HealConfig.kind`` and ``HealConfig.target``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from msgspec.structs import force_setattr

from agent.config.errors import unknown_key
from agent.config.model import After, Before, KeyedError, Loc, context, field
from agent.config.policies import DEFAULT_POSTMORTEM_AFTER, PoliciesConfig
from agent.config.rates import BaselineConfig, FlappingConfig, OpenWhen
from agent.config.report import ReportConfig
from agent.config.types import (
    ConfigModel,
    Count,
    Duration,
    HttpUrl,
    Inherited,
    Name,
    NonEmptyStr,
    PositiveDuration,
    Secret,
    Severity,
    absolute,
    base_dir,
    empty_is_none,
    lower,
)
from agent.durations import format_duration, parse_duration

if TYPE_CHECKING:  # pragma: no cover
    from agent.flapping import FlapRule
    from agent.maintenance import Window
    from agent.rates import RateRule

__all__ = [
    "DEFAULT_DOCKER_URL",
    "AgentConfig",
    "ApiConfig",
    "CheckConfigBase",
    "Config",
    "DefaultsConfig",
    "DeliveryConfig",
    "DiscoverConfig",
    "DockerConfig",
    "HealConfig",
    "HealKind",
    "NotifierConfigBase",
    "RetentionConfig",
    "heal_kinds",
]

DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"

OpenOn = Annotated[Literal["failing", "warning"], Before(lower)]
"""What opens an incident: a failing result (the default), or a warning already."""


def _listen(value: str) -> str:
    _split_listen(value)
    return value


def _no_trailing_slash(value: str | None) -> str | None:
    return value.rstrip("/") if value else value


class ApiConfig(ConfigModel):
    """The local HTTP API: health, metrics, incidents, status page."""

    token: Annotated[str | None, Before(empty_is_none), Secret] = None
    listen: Annotated[str, After(_listen)] = "127.0.0.1:9810"
    public_url: Annotated[HttpUrl | None, Before(empty_is_none), After(_no_trailing_slash)] = None

    def __post_init__(self) -> None:
        host, _ = _split_listen(self.listen)
        if not self.token and not _is_loopback(host):
            raise KeyedError("listen", f"{self.listen} is not loopback; set agent.api.token")

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    # ASCII digits only: str.isdigit() also takes '²', which int() then refuses.
    if not sep or not host or not re.fullmatch(r"[0-9]+", port):
        raise ValueError(f"expected host:port, got {value if len(value) <= 80 else value[:80] + '...'!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, e.g. [::1]:9810")
    number = int(port) if len(port) <= 30 else 10**30  # int() of thousands of digits raises
    if not 1 <= number <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port if len(port) <= 30 else 'a longer number'}")
    return host, number


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RetentionConfig(ConfigModel):
    """How long the store keeps what it no longer needs."""

    results_per_check: Count = 1000
    minute_rollups: PositiveDuration = 2 * 86400.0  # per check and minute: total, failing, latency
    day_rollups: PositiveDuration = 400 * 86400.0  # per check and day: the status page's 90 days
    delivered_events: PositiveDuration = 7 * 86400.0
    resolved_evidence: PositiveDuration = 30 * 86400.0


class DeliveryConfig(ConfigModel):
    """How the outbox retries an event a notifier failed to take."""

    retry_initial: PositiveDuration = 1.0
    retry_max: PositiveDuration = 300.0
    evidence_wait: Duration = 3.0

    def __post_init__(self) -> None:
        if self.retry_max < self.retry_initial:
            shorter, initial = format_duration(self.retry_max), format_duration(self.retry_initial)
            raise KeyedError("retry_max", f"{shorter} is shorter than retry_initial {initial}")


_IN_STATE_DIR: Path = Path("state", "postmortems")  # the default, by identity: made state_dir/postmortems


class AgentConfig(ConfigModel):
    """The agent itself: identity, state, API, global switches."""

    name: NonEmptyStr = field(default_factory=socket.gethostname)
    state_dir: Annotated[Path, Before(_not_blank)] = Path("state")  # made absolute, relative to the file
    api: ApiConfig = field(default_factory=ApiConfig)
    heal: bool = True
    max_concurrent_checks: Count = 1000  # a hanging target holds one until its timeout
    log_level: Annotated[Literal["debug", "info", "warning", "error"], Before(lower)] = "info"
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    status_page: bool = True  # GET /status and /status.json, without the token
    status_title: NonEmptyStr | None = None  # the status page's public title; default "<name> status"
    # Where postmortem drafts go (default: state_dir/postmortems), and the Jinja2 template they are
    # rendered from (default: the one shipped in agent/templates); checked at load: exists, parses, renders.
    postmortem_dir: Annotated[Path, Before(_not_blank)] = field(default_factory=lambda: _IN_STATE_DIR)
    postmortem_template: Path | None = None

    def __post_init__(self) -> None:
        base = base_dir()
        state = absolute(self.state_dir, base)
        # The daemon creates the folder (and its parents) at start: a file in the way stops it.
        blocker = _blocker(state)
        if blocker == state:
            raise KeyedError("state_dir", f"{state} exists and is not a folder")
        if blocker is not None:
            raise KeyedError("state_dir", f"{blocker} is not a folder, so {state} cannot be created")
        drafts = state / "postmortems" if self.postmortem_dir is _IN_STATE_DIR else absolute(self.postmortem_dir, base)
        blocker = _blocker(drafts)
        if blocker is not None:
            raise KeyedError("postmortem_dir", f"{blocker} is not a folder, so drafts cannot be written in {drafts}")
        template = None if self.postmortem_template is None else absolute(self.postmortem_template, base)
        if template is not None and template != self.postmortem_template:
            from agent.postmortem import TemplateProblem, load_template

            try:
                load_template(template)
            except TemplateProblem as exc:
                raise KeyedError("postmortem_template", str(exc)) from None
        force_setattr(self, "state_dir", state)
        force_setattr(self, "postmortem_dir", drafts)
        force_setattr(self, "postmortem_template", template)


def _not_blank(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty")
    return value


def _blocker(path: Path) -> Path | None:
    """The first of ``path`` and its parents that exists and is not a folder, if any."""
    found = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
    return found if found is not None and not found.is_dir() else None


_DOCKER_SCHEMES = ("unix", "tcp", "http", "https")  # agent.dockerclient.SCHEMES, without importing it


class DiscoverConfig(ConfigModel):
    """Checks from container labels (``lifeguard.check.type=http`` …); off unless enabled."""

    enabled: bool = False
    # auto: the Compose project of the agent's own container; a name: that project; any: every container
    project: NonEmptyStr = "auto"
    allow_heal: bool = False  # honour ``lifeguard.heal=restart``
    poll: PositiveDuration = 30.0  # the safety net under Docker's events


def _docker_url_from_environment() -> str:
    environ = context().get("environ", os.environ)
    return environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL


def _known_scheme(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _DOCKER_SCHEMES or not rest:
        raise ValueError(f"expected a Docker URL such as {DEFAULT_DOCKER_URL} or tcp://127.0.0.1:2375")
    return value


class DockerConfig(ConfigModel):
    """How to reach the Docker engine, and whether to discover checks from container labels."""

    url: Annotated[str, After(_known_scheme)] = field(default_factory=_docker_url_from_environment)
    timeout: PositiveDuration = 10.0
    discover: DiscoverConfig = field(default_factory=DiscoverConfig)


def _rule_parses(value: str) -> str:
    from agent.severity_rules import RuleError, parse

    try:
        parse(value)
    except RuleError as exc:
        raise ValueError(str(exc)) from None
    return value


class SeverityRule(ConfigModel):
    """``{when: "failing_for >= 2m", severity: critical}``: raise the incident to ``severity`` while
    ``when`` holds (``agent.severity_rules`` has the language)."""

    when: Annotated[NonEmptyStr, After(_rule_parses)]
    severity: Severity


def _every_notifier() -> list[str]:
    return list(context().get("notifier_names", []))


class DefaultsConfig(ConfigModel):
    """What every check inherits unless it says otherwise; here with the built-ins applied."""

    interval: PositiveDuration = 30.0
    timeout: PositiveDuration = 10.0
    open_after: Duration = 60.0
    resolve_after: Count = 2
    severity: Severity = "high"
    open_on: OpenOn = "failing"
    notify: list[str] = field(default_factory=_every_notifier)
    severity_rules: list[SeverityRule] = field(default_factory=list)
    open_when: OpenWhen | None = None  # replaces open_after (inherited or not) where set
    baseline: BaselineConfig | None = None  # kept only where set, or where a condition compares with it
    flapping: FlappingConfig = field(default_factory=FlappingConfig)


INHERITED = tuple(DefaultsConfig.model_fields)


# --- heal --------------------------------------------------------------------------------------


class HealKind(Protocol):
    """What the config needs from a registered healer class (``actions.healers.HEALERS``).

    A kind may also have ``target_of(value)`` (the target from the value written under its key;
    ``ValueError`` when it is none) and ``timeout_default`` (a float when it takes
    ``heal.timeout``); a kind without them takes a non-empty string and no timeout.
    """

    def default_target(self, check: Mapping[str, Any]) -> str | None: ...


def heal_kinds(ctx: Mapping[str, Any]) -> Mapping[str, HealKind]:
    """The registered heal kinds: as ``load_config`` read them, else the registry as it is now."""
    kinds: Mapping[str, HealKind] | None = ctx.get("heal_kinds")
    if kinds is None:
        from actions.healers import HEALERS  # not at import time: actions imports this package

        kinds = HEALERS
    return kinds


def _timeout_default(healer: HealKind) -> float | None:
    default = getattr(healer, "timeout_default", None)
    return float(default) if isinstance(default, (int, float)) else None


_NO_DEFAULT = "required (the check has no container to default to)"


class HealConfig(ConfigModel):
    """What to do when the check's incident opens: one heal kind, on one target, within a budget.

    In YAML the kind is the key and the target its value: ``heal: {restart_container: api,
    max_restarts: 3}`` is kind ``restart_container``, target ``api``; ``heal: {run: [fix, --now]}``
    is kind ``run``, target the command line ``fix --now``. Left out, the kind whose healer can
    default a target from the check (its ``container``) is used. ``timeout`` is for the kinds
    that take one (``run``, ``restart_service``), filled with their default; None for the others
    (and then left out of ``model_dump``).
    """

    kind: NonEmptyStr
    target: NonEmptyStr
    max_restarts: Count = 3
    within: PositiveDuration = 15 * 60.0
    cooldown: Duration = 30.0
    timeout: PositiveDuration | None = None

    @classmethod
    def yaml_keys(cls, context: Mapping[str, Any]) -> list[str]:
        """The heal kinds' keys, and the budget's."""
        return [*heal_kinds(context), *(key for key in cls.model_fields if key not in ("kind", "target"))]

    @classmethod
    def prepare(cls, data: Any) -> Any:
        """The file's shape (the kind's key holding the target) in the model's (``kind``, ``target``)."""
        ctx = context()
        from_file = "heal_kinds" in ctx
        if not isinstance(data, Mapping) or ("kind" in data and not from_file):
            return data  # built in code, in the model's own shape
        kinds = heal_kinds(ctx)
        for key in ("kind", "target"):
            if key in data:  # the model's own names are not YAML keys
                raise KeyedError(key, unknown_key(key, cls.yaml_keys(ctx)))
        # A kind's key written with no value (``stop_container:``) still names that kind.
        written = [key for key in data if key in kinds]
        if len(written) > 1:
            raise KeyedError(str(written[1]), f"one heal kind per check (also {written[0]})")
        if not written and not kinds:
            raise ValueError("no heal kinds are available")
        kind = written[0] if written else next(iter(kinds))
        healer = kinds[kind]
        translated = {key: value for key, value in data.items() if key not in kinds} | {"kind": kind}
        if written and data[kind] is not None:
            target_of = getattr(healer, "target_of", None)
            try:
                translated["target"] = target_of(data[kind]) if target_of is not None else data[kind]
            except ValueError as exc:
                raise KeyedError(kind, str(exc)) from None
        takes_timeout = _timeout_default(healer)
        if translated.get("timeout") is not None and takes_timeout is None:
            taking = [k for k, h in kinds.items() if _timeout_default(h) is not None]
            raise KeyedError("timeout", f"only {' and '.join(taking) or 'no'} heals take a timeout, not {kind}")
        if translated.get("timeout") is None and takes_timeout is not None:
            cooldown = _duration_or_none(translated.get("cooldown"), 30.0)
            if cooldown is not None and 0 < cooldown < takes_timeout:
                takes_timeout = cooldown  # the default, cut to the cooldown
            translated["timeout"] = Inherited(takes_timeout)
        return translated

    @classmethod
    def relocate(cls, loc: Loc, errors: list[tuple[Loc, str]], data: Any) -> list[tuple[Loc, str]]:
        """The target was written (or is missing) as the kind's key: report it there."""
        kind = data.get("kind") if isinstance(data, Mapping) and "heal_kinds" in context() else None
        if not isinstance(kind, str):
            return errors
        healer = heal_kinds(context()).get(kind)
        has_default = healer is not None and healer.default_target({"container": "c"}) is not None
        at = (*loc, "target")
        moved = []
        for where, text in errors:
            if where[: len(at)] == at:
                where = (*loc, kind, *where[len(at) :])
                if text == "required":
                    text = _NO_DEFAULT if has_default else "required"
            moved.append((where, text))
        return moved

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout > self.cooldown:
            raise KeyedError(
                "timeout",
                f"{format_duration(self.timeout)} is longer than the cooldown {format_duration(self.cooldown)}"
                " (a heal still running when the cooldown ends would be judged failed and made again)",
            )

    def model_dump(self) -> dict[str, Any]:
        dumped = super().model_dump()
        if dumped.get("timeout", 0) is None:
            del dumped["timeout"]
        return dumped


def _duration_or_none(value: Any, default: float) -> float | None:
    """A duration as written (or inherited), if it is one; None if it is not (reported elsewhere)."""
    if value is None:
        return default
    if isinstance(value, float):
        return value
    try:
        return parse_duration(value)
    except (ValueError, TypeError):
        return None


# --- what every check and notifier has -----------------------------------------------------------


class CheckConfigBase(ConfigModel):
    """Keys every check type has; a check type's own model adds its keys and narrows ``type``."""

    name: Name
    type: str
    interval: PositiveDuration
    timeout: PositiveDuration
    open_after: Duration
    resolve_after: Count
    severity: Severity
    open_on: OpenOn = "failing"
    notify: list[str]
    severity_rules: list[SeverityRule]
    container: NonEmptyStr | None = None
    heal: HealConfig | None = None
    tags: list[Name] = field(default_factory=list)
    group: Name | None = None  # the service it belongs to on the status page (default: its first tag)
    open_when: OpenWhen | None = None
    baseline: BaselineConfig | None = None
    flapping: FlappingConfig = field(default_factory=FlappingConfig)
    depends_on: list[Name] = field(default_factory=list)  # checks whose open incident holds this one's back

    @property
    def baseline_rule(self) -> BaselineConfig | None:
        """The latency baseline to keep: as set (on the check or in ``defaults``), else the built-in
        one when a condition compares with ``baseline``; None: none is kept (a baseline costs memory
        per check: ~200 KB for an hour at one result a second)."""
        if self.baseline is not None:
            return self.baseline
        from checks.conditions import Baseline  # not at import time: checks imports this package

        conditions = getattr(self, "conditions", ())
        return BaselineConfig() if any(isinstance(c.value, Baseline) for c in conditions) else None

    @property
    def open_rule(self) -> RateRule | None:
        """``open_when`` as the incident machine reads it (None: ``open_after`` decides)."""
        from agent.rates import parse_rate_rule

        return parse_rate_rule(self.open_when) if self.open_when is not None else None

    @property
    def flap_rule(self) -> FlapRule | None:
        """``flapping`` as the incident machine reads it (None: not watched)."""
        return self.flapping.rule()

    @classmethod
    def prepare(cls, data: Any) -> Any:
        """What the check does not say, from ``defaults:``; an inherited timeout cut to the interval."""
        if not isinstance(data, Mapping):
            return data
        ctx = context()
        defaults = ctx.get("defaults") or DefaultsConfig()
        merged = dict(data)
        for key in INHERITED:
            if merged.get(key) is None:
                value = getattr(defaults, key)
                merged[key] = Inherited(value) if isinstance(value, float) else value
        merged["notify"] = list(merged["notify"]) if isinstance(merged["notify"], list) else merged["notify"]
        heal = merged.get("heal")
        if isinstance(heal, Mapping) and "kind" not in heal:
            kinds = heal_kinds(ctx)
            named = [kind for kind in kinds if kind in heal]
            if not named:  # ``heal: {}``: the first kind that can default its target
                for kind, healer in kinds.items():
                    target = healer.default_target(merged)
                    if target is not None:
                        merged["heal"] = {**heal, kind: target}
                        break
            elif len(named) == 1 and heal[named[0]] is None:  # ``stop_container:`` with no value
                target = kinds[named[0]].default_target(merged)
                if target is not None:
                    merged["heal"] = {**heal, named[0]: target}
        timeout = merged["timeout"]
        interval = _duration_or_none(merged["interval"], 0.0)
        if isinstance(timeout, Inherited) and interval is not None and 0 < interval < timeout:
            merged["timeout"] = Inherited(interval)
        return merged

    def __post_init__(self) -> None:
        if self.timeout > self.interval:
            longer = format_duration(self.timeout)
            raise KeyedError("timeout", f"{longer} is longer than the interval {format_duration(self.interval)}")


def _known_events(value: list[str] | None) -> list[str] | None:
    from agent.routing import EVENT_NAMES

    if value is None:
        return None
    if not value:
        raise ValueError("must list at least one event (leave it out for every event)")
    for name in value:
        if name not in EVENT_NAMES:
            from difflib import get_close_matches  # only when there is a mistake to hint at

            close = get_close_matches(name, list(EVENT_NAMES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown event {name!r} ({hint}expected some of: {', '.join(EVENT_NAMES)})")
    return list(dict.fromkeys(value))


class NotifierConfigBase(ConfigModel):
    """Keys every notifier type has; a notifier type's own model adds its keys and narrows ``type``."""

    name: Name
    type: str
    timeout: PositiveDuration = 10.0
    give_up_after: PositiveDuration = 86400.0
    events: Annotated[list[str] | None, After(_known_events)] = None  # short names (opened, …); None: every event
    min_severity: Severity | None = None
    internal: bool = False  # also takes internal comments of incidents (a team channel, not a customer's)


# --- routes ------------------------------------------------------------------------------------


class CheckMatch(ConfigModel):
    """Which checks something covers: every field given must hold, a field lists alternatives (one
    value alone is a list of one); empty: every check."""

    check: list[Name] | None = None
    tags: list[Name] | None = None
    container: list[NonEmptyStr] | None = None

    @classmethod
    def prepare(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: [v] if isinstance(v, str) else v for k, v in data.items()}
        return data


class RouteMatch(CheckMatch):
    """What a route matches: a check's name, tags, container, and its severity."""

    severity: list[Severity] | None = None


def _sends_somewhere(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must name at least one notifier (a route that sends nowhere)")
    return value


class RouteConfig(ConfigModel):
    """One entry of ``routes:``: where the incidents of the checks it matches go."""

    match: RouteMatch = field(default_factory=RouteMatch)
    notify: Annotated[list[Name], After(_sends_somewhere)]
    continue_: bool = field(default=False, name="continue")


# --- maintenance windows ---------------------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (write it in UTC, e.g. 2026-12-01T02:00:00Z)")
    return value


def _cron(value: str | None) -> str | None:
    from agent.maintenance import Cron, CronError

    if value is not None:
        try:
            Cron.parse(value)
        except CronError as exc:
            raise ValueError(f"invalid cron expression: {exc}") from None
    return value


class MaintenanceConfig(ConfigModel):
    """One entry of ``maintenance:``: a fixed window (``start``, ``end``) or a recurring one (``cron``,
    ``duration``), in UTC. Checks run and incidents are recorded; nothing is sent or healed (unless
    ``heal: true``); an incident still open when it ends is notified then, once."""

    name: Name
    start: Annotated[datetime | None, After(_utc)] = None
    end: Annotated[datetime | None, After(_utc)] = None
    cron: Annotated[NonEmptyStr | None, After(_cron)] = None
    duration: PositiveDuration | None = None
    match: CheckMatch = field(default_factory=CheckMatch)
    heal: bool = False

    def __post_init__(self) -> None:
        fixed = self.start is not None or self.end is not None
        recurring = self.cron is not None or self.duration is not None
        if fixed and recurring:
            raise ValueError("a window is either fixed (start, end) or recurring (cron, duration), not both")
        if fixed and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("a fixed window needs start and end, end after start")
        if recurring and (self.cron is None or self.duration is None):
            raise ValueError("a recurring window needs cron and duration")
        if not fixed and not recurring:
            raise ValueError("needs start and end, or cron and duration")

    def window(self) -> Window:
        """The engine's form of it."""
        from agent.maintenance import Cron, Match, Window

        match = Match.of(self.match.model_dump())
        if self.cron is not None and self.duration is not None:
            return Window(self.name, match, self.heal, cron=Cron.parse(self.cron), duration=self.duration)
        assert self.start is not None and self.end is not None
        return Window(self.name, match, self.heal, start=self.start.timestamp(), end=self.end.timestamp())


# --- the whole file ----------------------------------------------------------------------------


class Config(ConfigModel):
    """A loaded, validated and fully resolved config file (built by ``load_config``, not from YAML)."""

    path: Path
    agent: AgentConfig
    docker: DockerConfig
    defaults: DefaultsConfig
    checks: list[CheckConfigBase]  # each entry is its type's own model
    notifiers: list[NotifierConfigBase]
    routes: list[RouteConfig] = field(default_factory=list)
    policies: PoliciesConfig = field(default_factory=PoliciesConfig)
    maintenance: list[MaintenanceConfig] = field(default_factory=list)
    postmortem_after: float = DEFAULT_POSTMORTEM_AFTER
    report: ReportConfig = field(default_factory=ReportConfig)

    def check(self, name: str) -> CheckConfigBase:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def notifier(self, name: str) -> NotifierConfigBase:
        for notifier in self.notifiers:
            if notifier.name == name:
                return notifier
        raise KeyError(name)

    def summary(self) -> str:
        """The effective config in one line, for the start-up log."""
        from checks import CHECK_TYPES  # not at import time: checks imports this package

        counts = Counter(check.type for check in self.checks)
        order = [*CHECK_TYPES, *(kind for kind in counts if kind not in CHECK_TYPES)]
        kinds = ", ".join(f"{kind} {counts[kind]}" for kind in order if counts[kind])
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
