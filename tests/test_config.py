"""The config contract: real YAML files in tmp_path, loaded exactly as the agent loads them."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

import checks
from actions import healers
from actions.notifiers import NOTIFIER_TYPES
from actions.notifiers.file import FileNotifierConfig
from actions.notifiers.webhook import WebhookNotifierConfig
from agent.config import CheckConfigBase, ConfigError, find_config, format_duration, load_config, parse_duration
from agent.config.types import NonEmptyStr
from checks.base import Check, Outcome
from checks.container import ContainerCheckConfig
from checks.http import HttpCheckConfig
from checks.tcp import TcpCheckConfig

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# The example from the documentation, as shipped.
EXAMPLE = """\
agent:
  name: web-01
  state_dir: ./state
  api: {listen: "127.0.0.1:9810", token: null, public_url: null}
  heal: true
  max_concurrent_checks: 100
  log_level: info
  retention: {results_per_check: 1000, delivered_events: 7d, resolved_evidence: 30d}
docker:
  url: unix:///var/run/docker.sock
  timeout: 10s
defaults:
  interval: 10s
  timeout: 5s
  open_after: 30s
  resolve_after: 2
  severity: high
  notify: [ops]
checks:
  - name: api
    type: http
    url: http://127.0.0.1:8080/health
    method: GET
    headers: {X-Token: "${TOKEN}"}
    verify_tls: true
    expect: {status: [200], body_contains: ok, max_latency: 2s}
    container: api
    heal: {restart_container: api, max_restarts: 3, within: 15m, cooldown: 30s}
  - {name: redis, type: tcp, host: 127.0.0.1, port: 6379}
  - {name: worker, type: container, container: worker}
notifiers:
  - {name: ops, type: webhook, url: "https://hooks.example.com/lifeguard", secret: "${LIFEGUARD_WEBHOOK_SECRET}", timeout: 10s, headers: {}, give_up_after: 24h}
  - {name: log, type: file, path: ./events.jsonl}
"""
EXAMPLE_ENV = {"TOKEN": "t0ken", "LIFEGUARD_WEBHOOK_SECRET": SECRET}


def write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(folder: Path, text: str, environ: dict[str, str] | None = None):
    return load_config(write(folder, text), environ or {})


def errors(folder: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(folder, text, environ)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


TCP = "{name: db, type: tcp, host: 127.0.0.1, port: 5432}"


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("100ms", 0.1), ("0s", 0.0), ("10s", 10.0), ("1.5s", 1.5), ("5m", 300.0),
     ("1h", 3600.0), ("7d", 604800.0), (" 2s ", 2.0)],
)
def test_parse_duration_reads_every_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["10", "fast", "10S", "-1s", "1h30m", ".5s", "10 s", "", 10, 1.5, True, None])
def test_parse_duration_rejects_anything_without_a_unit(value: object) -> None:
    with pytest.raises(ValueError, match=r"^invalid duration "):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (0.0005, "0.5ms"), (1.5, "1.5s"), (10, "10s"), (90, "90s"),
     (900, "15m"), (5400, "90m"), (3600, "1h"), (86400, "1d"), (604800, "7d")],
)
def test_format_duration_is_the_shortest_exact_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


# --- loading a valid file --------------------------------------------------------------------


def test_shipped_example_loads_with_every_value_resolved(tmp_path: Path) -> None:
    config = load(tmp_path, EXAMPLE, EXAMPLE_ENV)

    assert config.path == tmp_path / "config.yaml"
    assert config.agent.name == "web-01"
    assert config.agent.state_dir == tmp_path / "state"
    assert (config.agent.api.listen, config.agent.api.token, config.agent.api.public_url) == ("127.0.0.1:9810", None, None)
    assert (config.agent.api.host, config.agent.api.port) == ("127.0.0.1", 9810)
    assert config.agent.heal is True
    assert config.agent.max_concurrent_checks == 100
    assert config.agent.log_level == "info"
    assert (config.agent.status_page, config.agent.status_title) == (True, None)
    assert config.agent.retention.model_dump() == {
        "results_per_check": 1000, "minute_rollups": 172800.0, "day_rollups": 34560000.0,
        "delivered_events": 604800.0, "resolved_evidence": 2592000.0,
    }
    assert config.agent.delivery.model_dump() == {"retry_initial": 1.0, "retry_max": 300.0, "evidence_wait": 3.0}
    assert config.docker.model_dump() == {
        "url": "unix:///var/run/docker.sock", "timeout": 10.0,
        "discover": {"enabled": False, "project": "auto", "allow_heal": False, "poll": 30.0},
    }

    api = config.check("api")
    assert isinstance(api, HttpCheckConfig)
    assert api.model_dump() == {
        "name": "api", "type": "http", "interval": 10.0, "timeout": 5.0, "open_after": 30.0,
        "resolve_after": 2, "severity": "high", "open_on": "failing", "notify": ["ops"], "severity_rules": [], "container": "api",
        "heal": {"kind": "restart_container", "target": "api", "max_restarts": 3, "within": 900.0, "cooldown": 30.0},
        "url": "http://127.0.0.1:8080/health", "method": "GET", "headers": {"X-Token": "t0ken"},
        "verify_tls": True, "ca_file": None, "expect": {"status": [200], "body_contains": "ok", "max_latency": 2.0},
        "conditions": [], "tags": [], "group": None,
        "open_when": None, "baseline": None,
        "flapping": {"enabled": True, "window": 20, "high": 50.0, "low": 25.0},
        "depends_on": [],
    }
    redis = config.check("redis")
    assert isinstance(redis, TcpCheckConfig)
    assert (redis.host, redis.port, redis.interval, redis.timeout, redis.container, redis.heal) == (
        "127.0.0.1", 6379, 10.0, 5.0, None, None,
    )
    worker = config.check("worker")
    assert isinstance(worker, ContainerCheckConfig) and worker.container == "worker"

    ops, log = config.notifiers
    assert isinstance(ops, WebhookNotifierConfig)
    assert (ops.name, ops.url, ops.secret, ops.headers, ops.timeout, ops.give_up_after) == (
        "ops", "https://hooks.example.com/lifeguard", SECRET, {}, 10.0, 86400.0,
    )
    assert isinstance(log, FileNotifierConfig)
    assert log.path == str(tmp_path / "events.jsonl")

    assert config.summary() == (
        f"{tmp_path / 'config.yaml'}: 3 checks (http 1, tcp 1, container 1), 2 notifiers, "
        f"state in {tmp_path / 'state'}, api on 127.0.0.1:9810"
    )


def test_shipped_example_needs_its_environment(tmp_path: Path) -> None:
    assert errors(tmp_path, EXAMPLE) == [
        "checks[0].headers.X-Token: environment variable TOKEN is not set",
        "notifiers[0].secret: environment variable LIFEGUARD_WEBHOOK_SECRET is not set",
    ]


def test_builtin_defaults_fill_everything_left_out(tmp_path: Path) -> None:
    config = load(tmp_path, f"""
        checks: [{TCP}]
        notifiers:
          - {{name: b, type: file}}
          - {{name: a, type: webhook, url: "http://127.0.0.1:9/hook"}}
    """)
    check = config.check("db")
    assert (check.interval, check.timeout, check.open_after, check.resolve_after, check.severity) == (
        30.0, 10.0, 60.0, 2, "high",
    )
    assert check.notify == ["b", "a"]  # every notifier, in file order
    assert config.defaults.notify == ["b", "a"]
    assert config.agent.name == socket.gethostname()
    assert config.agent.state_dir == tmp_path / "state"
    assert config.agent.api.listen == "127.0.0.1:9810"
    assert (config.agent.heal, config.agent.max_concurrent_checks, config.agent.log_level) == (True, 1000, "info")
    assert config.docker.url == "unix:///var/run/docker.sock"
    assert config.docker.timeout == 10.0
    webhook = config.notifier("a")
    assert (webhook.secret, webhook.headers, webhook.timeout, webhook.give_up_after) == (None, {}, 10.0, 86400.0)


def test_delivery_retries_can_be_tuned(tmp_path: Path) -> None:
    config = load(tmp_path, "agent: {delivery: {retry_initial: 200ms, retry_max: 1s, evidence_wait: 0s}}")
    assert config.agent.delivery.model_dump() == {"retry_initial": 0.2, "retry_max": 1.0, "evidence_wait": 0.0}


def test_docker_url_defaults_to_docker_host_from_the_environment(tmp_path: Path) -> None:
    config = load(tmp_path, "checks: []", {"DOCKER_HOST": "unix:///tmp/lg/docker.sock"})
    assert config.docker.url == "unix:///tmp/lg/docker.sock"


def test_an_empty_section_means_its_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "agent:\ndocker:\ndefaults:\nchecks:\nnotifiers:\n")
    assert (config.checks, config.notifiers, config.agent.heal) == ([], [], True)


def test_checks_inherit_defaults_and_their_own_values_win(tmp_path: Path) -> None:
    config = load(tmp_path, """
        defaults: {interval: 20s, timeout: 3s, open_after: 0s, resolve_after: 4, severity: low, notify: [a]}
        checks:
          - {name: inherits, type: tcp, host: h, port: 1}
          - {name: own, type: tcp, host: h, port: 1, interval: 1m, timeout: 9s, open_after: 5s,
             resolve_after: 1, severity: critical, notify: [b]}
          - {name: silent, type: tcp, host: h, port: 1, notify: []}
        notifiers: [{name: a, type: file}, {name: b, type: file}]
    """)
    inherits, own, silent = config.checks
    assert (inherits.interval, inherits.timeout, inherits.open_after, inherits.resolve_after) == (20.0, 3.0, 0.0, 4)
    assert (inherits.severity, inherits.notify) == ("low", ["a"])
    assert (own.interval, own.timeout, own.open_after, own.resolve_after) == (60.0, 9.0, 5.0, 1)
    assert (own.severity, own.notify) == ("critical", ["b"])  # replaces the default list, does not extend it
    assert silent.notify == []


def test_an_inherited_timeout_is_clamped_to_the_interval(tmp_path: Path) -> None:
    config = load(tmp_path, """
        defaults: {timeout: 40s}
        checks: [{name: fast, type: tcp, host: h, port: 1, interval: 5s}]
    """)
    assert (config.check("fast").interval, config.check("fast").timeout) == (5.0, 5.0)


def test_an_explicit_timeout_longer_than_the_interval_is_an_error(tmp_path: Path) -> None:
    assert errors(tmp_path, """
        defaults: {interval: 10s}
        checks:
          - {name: a, type: tcp, host: h, port: 1, timeout: 20s}
          - {name: b, type: tcp, host: h, port: 1, timeout: 2m, interval: 1m}
          - {name: c, type: tcp, host: h, port: 1, timeout: 10s}
    """) == [
        "checks[0].timeout: 20s is longer than the interval 10s",
        "checks[1].timeout: 2m is longer than the interval 1m",
    ]


@pytest.mark.parametrize(
    ("written", "canonical"),
    [("critical", "critical"), ("High", "high"), ("SEV-1", "critical"), ("sev-2", "high"),
     ("Sev-3", "medium"), ("SEV-4", "low")],
)
def test_severity_aliases_resolve_to_the_canonical_name(tmp_path: Path, written: str, canonical: str) -> None:
    config = load(tmp_path, f"checks: [{{name: a, type: tcp, host: h, port: 1, severity: {written}}}]")
    assert config.check("a").severity == canonical


def test_heal_restarts_the_checks_own_container_unless_told_otherwise(tmp_path: Path) -> None:
    config = load(tmp_path, """
        checks:
          - {name: a, type: container, container: app, heal: {}}
          - {name: b, type: http, url: "http://127.0.0.1:1/", container: web, heal: {restart_container: proxy}}
    """)
    assert config.check("a").heal.model_dump() == {
        "kind": "restart_container", "target": "app", "max_restarts": 3, "within": 900.0, "cooldown": 30.0,
    }
    assert (config.check("b").heal.kind, config.check("b").heal.target) == ("restart_container", "proxy")


def test_heal_reports_every_mistake_in_it_at_once(tmp_path: Path) -> None:
    assert errors(tmp_path, "checks: [{name: a, type: tcp, host: h, port: 1, heal: {max_restarts: 0}}]") == [
        "checks[0].heal.restart_container: required (the check has no container to default to)",
        "checks[0].heal.max_restarts: must be 1 or more, got 0",
    ]


@pytest.mark.parametrize(
    ("heal", "expected"),
    [
        ("{restart_container: ''}", "checks[0].heal.restart_container: must not be empty"),
        ("{restart_container: [a]}", "checks[0].heal.restart_container: expected a string"),
        ("{kind: restart_container}", "checks[0].heal.kind: unknown key"),
        ("{target: app}", "checks[0].heal.target: unknown key"),
        ("{restart_containr: app}", "checks[0].heal.restart_containr: unknown key (did you mean 'restart_container'?)"),
    ],
)
def test_heal_is_written_with_the_kind_as_its_key(tmp_path: Path, heal: str, expected: str) -> None:
    assert errors(tmp_path, f"checks: [{{name: a, type: container, container: app, heal: {heal}}}]") == [expected]


class PageHealer:
    """A heal kind with no default target, registered by a test."""

    kind: ClassVar[str] = "page"
    needs: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def default_target(cls, check: Mapping[str, Any]) -> str | None:
        return None


def test_a_registered_heal_kind_is_configurable_by_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(healers.HEALERS, "page", PageHealer)
    config = load(tmp_path, """
        checks:
          - {name: a, type: tcp, host: h, port: 1, container: app, heal: {page: team-a, cooldown: 1m}}
          - {name: b, type: tcp, host: h, port: 1, container: app, heal: {}}
    """)
    assert config.check("a").heal.model_dump() == {
        "kind": "page", "target": "team-a", "max_restarts": 3, "within": 900.0, "cooldown": 60.0,
    }
    assert (config.check("b").heal.kind, config.check("b").heal.target) == ("restart_container", "app")
    assert errors(tmp_path, "checks: [{name: a, type: tcp, host: h, port: 1, heal: {page: x, restart_container: y}}]") == [
        "checks[0].heal.restart_container: one heal kind per check (also page)",
    ]


def test_expect_status_accepts_a_code_a_class_or_a_list(tmp_path: Path) -> None:
    config = load(tmp_path, """
        checks:
          - {name: a, type: http, url: "http://127.0.0.1:1/", expect: {status: 204}}
          - {name: b, type: http, url: "https://127.0.0.1:1/", expect: {status: 2XX}, method: head}
          - {name: c, type: http, url: "http://127.0.0.1:1/", expect: {status: [200, "3xx", "404"]}}
          - {name: d, type: http, url: "http://127.0.0.1:1/"}
    """)
    assert [c.expect.status if c.expect else None for c in config.checks] == [[204], ["2xx"], [200, "3xx", 404], None]
    assert config.check("b").method == "HEAD"


def test_loaded_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, f"checks: [{TCP}]")
    with pytest.raises(AttributeError):
        config.check("db").interval = 1.0  # type: ignore[misc]


def test_check_lookup_of_an_unknown_name_raises_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        load(tmp_path, f"checks: [{TCP}]").check("nope")


def test_summary_is_relative_to_the_working_folder_and_shows_dry_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load(tmp_path, f"agent: {{heal: false}}\nchecks: [{TCP}]\nnotifiers: [{{name: f, type: file}}]")
    assert config.summary() == (
        f"config.yaml: 1 check (tcp 1), 1 notifier, state in {tmp_path / 'state'}, "
        "api on 127.0.0.1:9810, heal off (dry run)"
    )


# --- paths -----------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(folder, "agent: {state_dir: ../var/state}\nnotifiers: [{name: f, type: file, path: logs/events.jsonl}]")
    monkeypatch.chdir(elsewhere)

    config = load_config("../etc/config.yaml", {})

    assert config.path == folder / "config.yaml"
    assert config.agent.state_dir == tmp_path / "var" / "state"
    assert config.notifier("f").path == str(folder / "logs" / "events.jsonl")


def test_file_notifier_defaults_to_events_jsonl_in_the_state_dir(tmp_path: Path) -> None:
    config = load(tmp_path, "agent: {state_dir: /srv/lifeguard}\nnotifiers: [{name: f, type: file}]")
    assert config.notifier("f").path == "/srv/lifeguard/events.jsonl"


def test_find_config_prefers_the_explicit_path(tmp_path: Path) -> None:
    explicit = write(tmp_path, "checks: []", "mine.yaml")
    fallback = write(tmp_path, "checks: []")
    assert find_config(str(explicit), candidates=[fallback]) == explicit
    assert find_config(None, candidates=[tmp_path / "missing.yaml", fallback]) == fallback


def test_find_config_fails_clearly_when_nothing_exists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config(str(tmp_path / "nope.yaml"), candidates=[write(tmp_path, "checks: []")])
    assert info.value.errors == [f"{tmp_path / 'nope.yaml'}: no such file"]
    with pytest.raises(ConfigError, match=r"^no config file found \(tried .*a\.yaml, .*b\.yaml\)"):
        find_config(None, candidates=[tmp_path / "a.yaml", tmp_path / "b.yaml"])


# --- environment -----------------------------------------------------------------------------


def test_environment_variables_expand_in_any_string_value(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        agent: {name: "${HOST}-agent"}
        checks:
          - {name: a, type: tcp, host: "${DB_HOST:-127.0.0.1}", port: "${DB_PORT}", interval: "${EVERY:-15s}",
             notify: ["${WHO}"]}
        notifiers: [{name: ops, type: file, path: "/x/$${literal}/${EMPTY:-fallback}/${SET}"}]
        """,
        {"HOST": "web", "DB_PORT": "6379", "WHO": "ops", "EMPTY": "", "SET": "${NOT_EXPANDED_AGAIN}"},
    )
    check = config.check("a")
    assert config.agent.name == "web-agent"
    assert (check.host, check.port, check.interval, check.notify) == ("127.0.0.1", 6379, 15.0, ["ops"])
    assert config.notifier("ops").path == "/x/${literal}/fallback/${NOT_EXPANDED_AGAIN}"


def test_a_missing_variable_is_reported_once_where_it_is_used(tmp_path: Path) -> None:
    # The unexpanded value must not cause a second error (a bad secret, a bad URL) at the same place.
    assert errors(tmp_path, """
        checks: [{name: a, type: http, url: "${TARGET}", notify: ["${WHO}"]}]
        notifiers:
          - {name: ops, type: webhook, url: "https://127.0.0.1/", secret: "${LIFEGUARD_WEBHOOK_SECRET}"}
          - {name: "${NAME}", type: "${KIND}"}
    """) == [
        "checks[0].url: environment variable TARGET is not set",
        "checks[0].notify[0]: environment variable WHO is not set",
        "notifiers[0].secret: environment variable LIFEGUARD_WEBHOOK_SECRET is not set",
        "notifiers[1].name: environment variable NAME is not set",
        "notifiers[1].type: environment variable KIND is not set",
    ]


def test_malformed_references_are_errors(tmp_path: Path) -> None:
    assert errors(tmp_path, """
        agent: {name: "${unclosed", log_level: "${9lives}"}
    """) == [
        "agent.name: unclosed '${' (write '$${' for a literal '${')",
        "agent.log_level: invalid variable reference '${9lives}'",
    ]


def test_an_empty_secret_or_token_from_the_environment_means_none(tmp_path: Path) -> None:
    config = load(tmp_path, """
        agent: {api: {token: "${TOKEN:-}"}}
        notifiers: [{name: ops, type: webhook, url: "https://127.0.0.1/", secret: "${SECRET:-}"}]
    """)
    assert (config.agent.api.token, config.notifier("ops").secret) == (None, None)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checks: [{name: a, type: tcp, host: h, port: 1, interval: fast}]",
         "checks[0].interval: invalid duration 'fast'"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, interval: 10}]",
         "checks[0].interval: invalid duration 10 (a unit is required, e.g. '10s')"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, interval: 0s}]", "checks[0].interval: must be longer than 0s"),
        ("checks: [{name: a, type: tcp, host: h, port: 70000}]", "checks[0].port: must be between 1 and 65535, got 70000"),
        ("checks: [{name: a, type: tcp, host: h, port: 0}]", "checks[0].port: must be between 1 and 65535, got 0"),
        ("checks: [{name: a, type: tcp, host: h, port: true}]", "checks[0].port: expected a whole number, not true/false"),
        ("checks: [{name: a, type: ftp}]", "checks[0].type: unknown check type 'ftp' (expected one of: http, tcp, container, tls, process, host, command)"),
        ("checks: [{name: a}]", "checks[0].type: required (expected one of: http, tcp, container, tls, process, host, command)"),
        ("checks: [{name: a, type: http}]", "checks[0].url: required"),
        ("checks: [{name: a, type: http, url: 'ftp://127.0.0.1/'}]", "checks[0].url: expected an http:// or https:// URL"),
        ("checks: [{name: a, type: container}]", "checks[0].container: required"),
        ("checks: [{type: tcp, host: h, port: 1}]", "checks[0].name: required"),
        ("checks: [{name: '', type: tcp, host: h, port: 1}]", "checks[0].name: must not be empty"),
        ("checks: [{name: 'my api', type: tcp, host: h, port: 1}]",
         "checks[0].name: invalid name 'my api' (use letters, digits, '_', '.' and '-')"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, severity: urgent}]",
         "checks[0].severity: invalid severity 'urgent' (expected one of: critical, high, medium, low, or SEV-1 to SEV-4)"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, resolve_after: 0}]", "checks[0].resolve_after: must be 1 or more, got 0"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, heal: {}}]",
         "checks[0].heal.restart_container: required (the check has no container to default to)"),
        ("checks: [{name: a, type: container, container: c, heal: {max_restarts: 0}}]",
         "checks[0].heal.max_restarts: must be 1 or more, got 0"),
        ("checks: [{name: a, type: http, url: 'http://h/', expect: {status: [abc]}}]",
         "checks[0].expect.status: invalid status 'abc' (expected a code like 200 or a class like '2xx')"),
        ("checks: [{name: a, type: http, url: 'http://h/', method: fetch}]",
         "checks[0].method: expected 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE' or 'OPTIONS'"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, url: 'http://h/'}]",
         "checks[0].url: unknown key for a tcp check (only http checks have it)"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, notify: [pager]}]\nnotifiers: [{name: ops, type: file}]",
         "checks[0].notify: no notifier named 'pager' (known: ops)"),
        ("defaults: {notify: [pager]}", "defaults.notify: no notifier named 'pager' (no notifiers are configured)"),
        ("checks: [[1]]", "checks[0]: expected a mapping, not a list"),
        ("checks: {a: 1}", "checks: expected a list of checks, not a dict"),
        ("agent: {api: {listen: '0.0.0.0:9810'}}", "agent.api.listen: 0.0.0.0:9810 is not loopback; set agent.api.token"),
        ("agent: {api: {listen: '9810'}}", "agent.api.listen: expected host:port, got '9810'"),
        ("agent: {api: {listen: '::1:9810'}}", "agent.api.listen: write an IPv6 address in brackets, e.g. [::1]:9810"),
        ("agent: {api: {public_url: 'status.example.com'}}", "agent.api.public_url: expected an http:// or https:// URL"),
        ("agent: {max_concurrent_checks: 0}", "agent.max_concurrent_checks: must be 1 or more, got 0"),
        ("agent: {log_level: loud}", "agent.log_level: expected 'debug', 'info', 'warning' or 'error'"),
        ("agent: {heal: maybe}", "agent.heal: expected true or false"),
        ("agent: [1]", "agent: expected a mapping"),
        ("agent: {delivery: {retry_initial: 10s, retry_max: 2s}}",
         "agent.delivery.retry_max: 2s is shorter than retry_initial 10s"),
        ("docker: {url: /var/run/docker.sock}",
         "docker.url: expected a Docker URL such as unix:///var/run/docker.sock or tcp://127.0.0.1:2375"),
        ("notifiers: [{name: n, type: sms}]", f"notifiers[0].type: unknown notifier type 'sms' (expected one of: {', '.join(NOTIFIER_TYPES)})"),
        ("notifiers: [{name: n, type: webhook}]", "notifiers[0].url: required"),
        ("notifiers: [{name: n, type: file, give_up_after: soon}]", "notifiers[0].give_up_after: invalid duration 'soon'"),
        ("notifiers: [{name: n, type: file, path: ''}]", "notifiers[0].path: must not be empty"),
        ("notifiers: [{name: n, type: webhook, url: 'http://h/', headers: {X-A: 1}}]", "notifiers[0].headers.X-A: expected a string"),
    ],
)
def test_each_mistake_is_reported_at_its_path(tmp_path: Path, text: str, expected: str) -> None:
    assert errors(tmp_path, text) == [expected]


def test_duplicate_names_point_at_the_first_use(tmp_path: Path) -> None:
    assert errors(tmp_path, f"""
        checks: [{TCP}, {TCP.replace("db", "api")}, {TCP}, {TCP.replace("db", "api")}]
        notifiers: [{{name: ops, type: file}}, {{name: ops, type: file}}]
    """) == [
        "checks[2].name: duplicate check name 'db' (also checks[0])",
        "checks[3].name: duplicate check name 'api' (also checks[1])",
        "notifiers[1].name: duplicate notifier name 'ops' (also notifiers[0])",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chekcs: []", "chekcs: unknown key (did you mean 'checks'?)"),
        ("agent: {state_directory: x}", "agent.state_directory: unknown key (did you mean 'state_dir'?)"),
        ("agent: {api: {listn: '127.0.0.1:1'}}", "agent.api.listn: unknown key (did you mean 'listen'?)"),
        ("checks: [{name: a, type: tcp, host: h, port: 1, intervall: 5s}]",
         "checks[0].intervall: unknown key (did you mean 'interval'?)"),
        ("checks: [{name: a, type: container, container: c, heal: {max_restart: 2}}]",
         "checks[0].heal.max_restart: unknown key (did you mean 'max_restarts'?)"),
        ("checks: [{name: a, type: http, url: 'http://h/', expect: {body_contain: ok}}]",
         "checks[0].expect.body_contain: unknown key (did you mean 'body_contains'?)"),
        ("notifiers: [{name: n, type: webhook, url: 'http://h/', secrett: x}]",
         "notifiers[0].secrett: unknown key (did you mean 'secret'?)"),
        ("defaults: {zzz: 1}", "defaults.zzz: unknown key"),
    ],
)
def test_unknown_keys_suggest_the_closest_known_key(tmp_path: Path, text: str, expected: str) -> None:
    assert errors(tmp_path, text) == [expected]


def test_every_mistake_in_a_file_is_reported_in_one_run(tmp_path: Path) -> None:
    assert errors(tmp_path, """
        agent:
          api: {listen: "0.0.0.0:9810"}
          log_level: loud
        defaults:
          severity: SEV-9
        checks:
          - name: api
            type: http
            url: http://127.0.0.1:8080/health
            intervall: 10s
            interval: 10s
            timeout: 20s
            notify: [pager]
          - {name: redis, type: tcp, host: 127.0.0.1, port: 70000, interval: fast}
          - {name: ftp, type: ftp}
          - {name: api, type: http}
        notifiers:
          - {name: ops, type: webhook, url: "https://hooks.example.com/x", secret: "${SECRET}"}
          - {name: log, type: file, timeout: 0s}
        extra: true
    """) == [
        "extra: unknown key",
        "agent.api.listen: 0.0.0.0:9810 is not loopback; set agent.api.token",
        "agent.log_level: expected 'debug', 'info', 'warning' or 'error'",
        "defaults.severity: invalid severity 'SEV-9' (expected one of: critical, high, medium, low, or SEV-1 to SEV-4)",
        "checks[0].timeout: 20s is longer than the interval 10s",
        "checks[0].intervall: unknown key (did you mean 'interval'?)",
        "checks[0].notify: no notifier named 'pager' (known: ops, log)",
        "checks[1].interval: invalid duration 'fast'",
        "checks[1].port: must be between 1 and 65535, got 70000",
        "checks[2].type: unknown check type 'ftp' (expected one of: http, tcp, container, tls, process, host, command)",
        "checks[3].url: required",
        "checks[3].name: duplicate check name 'api' (also checks[0])",
        "notifiers[0].secret: environment variable SECRET is not set",
        "notifiers[1].timeout: must be longer than 0s",
    ]


@pytest.mark.parametrize("secret", ["hunter2", "whsec_", "whsec_not*base64!", "whsec_abc"])
def test_a_bad_webhook_secret_is_an_error_that_never_shows_the_value(tmp_path: Path, secret: str) -> None:
    found = errors(tmp_path, f"notifiers: [{{name: ops, type: webhook, url: 'https://h/', secret: '{secret}'}}]")
    assert found == ["notifiers[0].secret: must be 'whsec_' followed by base64 (the value is not shown)"]


def test_secrets_stay_out_of_reprs(tmp_path: Path) -> None:
    config = load(tmp_path, f"""
        agent: {{api: {{listen: "0.0.0.0:9810", token: tok3n}}}}
        checks: [{{name: a, type: http, url: "http://h/", headers: {{Authorization: Bearer b3arer}}}}]
        notifiers: [{{name: ops, type: webhook, url: "https://hooks.example.com/s3cret", secret: {SECRET}}}]
    """)
    shown = repr(config)
    assert config.agent.api.token == "tok3n"
    for secret in ("tok3n", "b3arer", "s3cret", SECRET):
        assert secret not in shown


def test_loopback_listen_addresses_need_no_token(tmp_path: Path) -> None:
    for listen in ("127.0.0.1:1", "127.8.9.1:1", "localhost:1", "[::1]:1"):
        assert load(tmp_path, f"agent: {{api: {{listen: '{listen}'}}}}").agent.api.listen == listen
    api = load(tmp_path, "agent: {api: {listen: '[::1]:9810'}}").agent.api
    assert (api.host, api.port) == ("::1", 9810)


# --- the file itself -------------------------------------------------------------------------


def test_a_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "checks:\n  - name: a\n    type: [tcp\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    [error] = info.value.errors
    assert error.startswith(f"{path}:4:1: ")


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(tmp_path, "checks: []\nagent: {}\nchecks: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.errors == [f"{path}:3:1: duplicate key 'checks' (first at line 1)"]


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    config = load(tmp_path, """
        checks:
          - &base {name: a, type: tcp, host: h, port: 1}
          - {<<: *base, name: b, port: 2}
    """)
    assert (config.check("b").host, config.check("b").port) == ("h", 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty (expected sections: agent, docker, defaults, checks, notifiers, routes, policies, postmortem_after, maintenance, report)"),
        ("# nothing yet\n", "the file is empty (expected sections: agent, docker, defaults, checks, notifiers, routes, policies, postmortem_after, maintenance, report)"),
        ("- a\n", "the top level must be a mapping of sections (agent, docker, defaults, checks, notifiers, routes, policies, postmortem_after, maintenance, report), not a list"),
        ("hello\n", "the top level must be a mapping of sections (agent, docker, defaults, checks, notifiers, routes, policies, postmortem_after, maintenance, report), not a string"),
    ],
)
def test_an_empty_or_shapeless_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.errors == [f"{path}: {message}"]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml", {})
    assert info.value.errors == [f"{tmp_path / 'nope.yaml'}: no such file"]


# --- hostile files: refused with a located error, never a traceback ------------------------


def file_errors(tmp_path: Path, text: str) -> list[str]:
    """The errors of a file written byte for byte (no dedent), with the file's path cut to ``F``."""
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    return [line.replace(str(path), "F") for line in info.value.errors]


def alias_bomb(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level lists ``width`` aliases of the one before."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nchecks: *a{levels}\n"


def test_an_alias_bomb_is_refused_where_the_expansion_passes_the_limit(tmp_path: Path) -> None:
    # 9 ** 7 values once expanded; counted while reading, the file is refused before any is built.
    assert file_errors(tmp_path, alias_bomb(7)) == [
        "F:6:10: aliases expand to more than 100,000 values (an alias bomb?)"
    ]


def test_aliases_that_repeat_a_few_values_many_times_still_load(tmp_path: Path) -> None:
    checks = "\n".join(f"  - {{<<: *base, name: c{i}, port: {i + 1}}}" for i in range(2000))
    config = load(tmp_path, "checks:\n  - &base {name: c, type: tcp, host: h, port: 1}\n" + checks + "\n")
    assert len(config.checks) == 2001


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checks: &x [*x]\n", "F:1:13: alias *x refers to a value that contains it"),
        ("agent: &a {name: x, api: *a}\n", "F:1:26: alias *a refers to a value that contains it"),
        ("checks:\n  - &c {name: c, heal: [*c]}\n", "F:2:25: alias *c refers to a value that contains it"),
    ],
)
def test_a_self_referencing_alias_is_a_located_error(tmp_path: Path, text: str, expected: str) -> None:
    assert file_errors(tmp_path, text) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checks: " + "[" * 1200 + "]" * 1200 + "\n", "F:1:58: nested more than 50 levels deep"),
        ("checks: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n", "F:1:202: nested more than 50 levels deep"),
        ("".join("  " * i + "a:\n" for i in range(60)), "F:50:99: nested more than 50 levels deep"),
    ],
)
def test_deep_nesting_is_a_located_error(tmp_path: Path, text: str, expected: str) -> None:
    assert file_errors(tmp_path, text) == [expected]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9" * 5000, "F:2:39: number too long (more than 100 digits)"),
        ("0x" + "f" * 200, "F:2:39: number too long (more than 100 digits)"),
        ('"' + "9" * 5000 + '"', "checks[0].port: number too long"),
        ("99999999999999999999999999", "checks[0].port: must be between 1 and 65535, got 99999999999999999999999999"),
    ],
)
def test_a_huge_port_is_a_located_error(tmp_path: Path, value: str, expected: str) -> None:
    assert file_errors(tmp_path, f"checks:\n- {{name: t, type: tcp, host: h, port: {value}}}\n") == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent:\n  name: \"a\x01b\"\n", "F:2:11: character U+0001 is not allowed (YAML allows only printable characters)"),
        ("agent:\n  name: a\x7f\n", "F:2:10: character U+007F is not allowed (YAML allows only printable characters)"),
        ("\x00", "F:1:1: character U+0000 is not allowed (YAML allows only printable characters)"),
    ],
)
def test_a_control_character_in_the_file_is_reported_at_line_and_column(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert file_errors(tmp_path, text) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent: {name: 2001-13-45}\n", "F:1:15: cannot read '2001-13-45' as a date (quote it to make it a string)"),
        ("agent: {name: !!int x}\n", "F:1:15: cannot read 'x' as a whole number (quote it to make it a string)"),
        ("agent: {heal: !!bool maybe}\n", "F:1:15: cannot read 'maybe' as true or false (quote it to make it a string)"),
        ("agent: {name: !!timestamp x}\n", "F:1:15: cannot read 'x' as a date (quote it to make it a string)"),
        # Found by the fuzz test in CI: a mapping tag on a scalar crashed the loader (ValueError).
        ("checks: !!set a\n", "F:1:9: set expects a mapping here"),
        ("agent: {api: !!set [1]}\n", "F:1:14: set expects a mapping here"),
    ],
)
def test_a_scalar_its_tag_cannot_read_is_a_located_error(tmp_path: Path, text: str, expected: str) -> None:
    assert file_errors(tmp_path, text) == [expected]


# --- what `run` cannot use, `check-config` refuses first --------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('agent: {state_dir: "st\\0ate"}', "agent.state_dir: must not contain a NUL character"),
        ('notifiers: [{name: f, type: file, path: "ev\\0.jsonl"}]', "notifiers[0].path: must not contain a NUL character"),
        ('checks: [{name: t, type: tcp, host: "h\\0", port: 1}]', "checks[0].host: must not contain a NUL character"),
    ],
)
def test_a_nul_character_in_any_value_is_an_error(tmp_path: Path, text: str, expected: str) -> None:
    assert errors(tmp_path, text) == [expected]


def test_a_state_dir_that_names_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    assert errors(tmp_path, "agent: {state_dir: taken}") == [f"agent.state_dir: {tmp_path / 'taken'} exists and is not a folder"]
    assert errors(tmp_path, "agent: {state_dir: taken/state}") == [
        f"agent.state_dir: {tmp_path / 'taken'} is not a folder, so {tmp_path / 'taken' / 'state'} cannot be created"
    ]
    assert load(tmp_path, "agent: {state_dir: new/state}").agent.state_dir == tmp_path / "new" / "state"


def test_a_file_notifier_path_that_names_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    assert errors(tmp_path, "notifiers: [{name: f, type: file, path: events}]") == [
        f"notifiers[0].path: {tmp_path / 'events'} is a folder; name a file in it"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent: {retention: {results_per_check: 99999999999999999999999999}}",
         "agent.retention.results_per_check: must be at most 1000000, got 99999999999999999999999999"),
        ("agent: {max_concurrent_checks: 1000001}", "agent.max_concurrent_checks: must be at most 1000000, got 1000001"),
        (f"checks: [{{name: h, type: container, container: c, heal: {{max_restarts: 0x{'f' * 90}}}}}]",
         "checks[0].heal.max_restarts: must be at most 1000000, got a number of about 109 digits"),
        ("defaults: {resolve_after: 10000000}", "defaults.resolve_after: must be at most 1000000, got 10000000"),
        ("defaults: {interval: 3651d}", "defaults.interval: must be at most 3650d"),
        (f"agent: {{retention: {{delivered_events: {'9' * 400}s}}}}", "agent.retention.delivered_events: must be at most 3650d"),
    ],
)
def test_absurd_numbers_are_refused_within_documented_bounds(tmp_path: Path, text: str, expected: str) -> None:
    assert errors(tmp_path, text) == [expected]


def test_the_largest_documented_numbers_load(tmp_path: Path) -> None:
    config = load(tmp_path, "agent: {retention: {results_per_check: 1000000, resolved_evidence: 3650d}}")
    assert config.agent.retention.results_per_check == 1_000_000
    assert config.agent.retention.resolved_evidence == 3650 * 86400


@pytest.mark.parametrize(
    "text",
    [
        'checks: [{name: a, type: http, url: "http://bob:pw@127.0.0.1/", headers: {authorization: "Bearer x"}}]',
        'checks: [{name: a, type: http, url: "http://bob@127.0.0.1/", headers: {Authorization: "Basic eA=="}}]',
    ],
)
def test_an_http_check_with_url_user_info_and_an_authorization_header_is_an_error(tmp_path: Path, text: str) -> None:
    [error] = errors(tmp_path, text)
    assert error.startswith("checks[0].headers.") and error.lower().startswith("checks[0].headers.authorization: ")
    assert error.endswith(": cannot go with a user name or password in url (every request would fail)")
    assert "pw" not in error and "Bearer" not in error and "bob" not in error


def test_a_webhook_with_url_user_info_and_an_authorization_header_is_an_error(tmp_path: Path) -> None:
    assert errors(tmp_path, 'notifiers: [{name: w, type: webhook, url: "https://u:p@h/", headers: {Authorization: x}}]') == [
        "notifiers[0].headers.Authorization: cannot go with a user name or password in url (every request would fail)"
    ]


def test_user_info_or_an_authorization_header_alone_is_fine(tmp_path: Path) -> None:
    config = load(tmp_path, """
        checks:
          - {name: a, type: http, url: "http://bob:pw@127.0.0.1/"}
          - {name: b, type: http, url: "http://127.0.0.1/", headers: {Authorization: "Bearer x"}}
    """)
    assert [c.name for c in config.checks] == ["a", "b"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ('{X-Token: "a\\nb"}', "checks[0].headers.X-Token: the value contains a control character such as a line break (not shown)"),
        ('{"X Token": a}', "checks[0].headers['X Token']: invalid header name (use letters, digits and -)"),
    ],
)
def test_a_header_an_http_client_refuses_is_an_error(tmp_path: Path, headers: str, expected: str) -> None:
    assert errors(tmp_path, f'checks: [{{name: a, type: http, url: "http://127.0.0.1/", headers: {headers}}}]') == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent: {api: {listen: '127.0.0.1:²'}}", "agent.api.listen: expected host:port, got '127.0.0.1:²'"),
        (f"agent: {{api: {{listen: '127.0.0.1:{'9' * 5000}'}}}}", "agent.api.listen: port must be between 1 and 65535, got a longer number"),
        ("checks: [{name: a, type: http, url: 'http://h/', expect: {status: ['²']}}]",
         "checks[0].expect.status: invalid status '²' (expected a code like 200 or a class like '2xx')"),
        (f"checks: [{{name: a, type: http, url: 'http://h/', expect: {{status: ['{'9' * 5000}']}}}}]",
         "checks[0].expect.status: invalid status '" + "9" * 5000 + "' (expected a code like 200 or a class like '2xx')"),
    ],
)
def test_digits_other_than_ascii_and_endless_digits_are_plain_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert errors(tmp_path, text) == [expected]


# --- plugins bring their own config ----------------------------------------------------------


class EchoCheckConfig(CheckConfigBase):
    type: Literal["echo"]
    message: NonEmptyStr


class EchoCheck(Check[EchoCheckConfig]):
    """A check type registered by a test: it passes with its configured message."""

    type: ClassVar[str] = "echo"
    config_model = EchoCheckConfig

    @property
    def target(self) -> str:
        return "echo"

    async def probe(self) -> Outcome:
        return Outcome(True, self.config.message)


def test_a_check_type_in_the_registry_is_configurable_with_its_own_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(checks.CHECK_TYPES, "echo", EchoCheck)
    config = load(tmp_path, f"checks: [{{name: e, type: echo, message: hi, interval: 5s}}, {TCP}]")

    echo = config.check("e")
    assert isinstance(echo, EchoCheckConfig)
    assert (echo.message, echo.interval, echo.timeout, echo.severity) == ("hi", 5.0, 5.0, "high")
    assert config.summary().endswith("2 checks (tcp 1, echo 1), 0 notifiers, "
                                     f"state in {tmp_path / 'state'}, api on 127.0.0.1:9810")


def test_a_registered_check_type_gets_the_same_error_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(checks.CHECK_TYPES, "echo", EchoCheck)
    assert errors(tmp_path, """
        checks:
          - {name: a, type: echo}
          - {name: b, type: echo, message: hi, port: 80}
          - {name: c, type: echo, mesage: hi}
          - {name: d, type: tcp, host: h, port: 1, message: hi}
          - {name: e, type: ftp}
    """) == [
        "checks[0].message: required",
        "checks[1].port: unknown key for a echo check (only tcp, tls checks have it)",
        "checks[2].message: required",
        "checks[2].mesage: unknown key (did you mean 'message'?)",
        "checks[3].message: unknown key for a tcp check (only echo checks have it)",
        "checks[4].type: unknown check type 'ftp' (expected one of: http, tcp, container, tls, process, host, command, echo)",
    ]


def test_a_check_type_not_in_the_registry_is_unknown(tmp_path: Path) -> None:
    assert errors(tmp_path, "checks: [{name: e, type: echo, message: hi}]") == [
        "checks[0].type: unknown check type 'echo' (expected one of: http, tcp, container, tls, process, host, command)",
    ]
