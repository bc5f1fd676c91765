"""Fuzzing the config contract: whatever the file holds, loading it ends in a config or in located errors.

Generated configs (plausible shapes with wrong, odd and hostile values) are dumped to YAML, then the
text is mutated (YAML punctuation, anchors and aliases, tags, control characters, huge numbers,
cut short). ``load_config`` must return or raise ``ConfigError`` whose every line starts with a
path into the file (``checks[0].port: ...``) or the file's name (``config.yaml:3:7: ...``); any
other exception is the bug this test is for. A subprocess then checks that ``check-config`` on an
alias bomb exits 2 at once with bounded memory.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import cli
from agent.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
ENVIRON = {"TOKEN": "t0ken", "EMPTY": "", "PORT": "8080"}

# --- what a path looks like (agent.config.errors.format_path) --------------------------------

_QUOTED = r"""\[(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]"""
_FIRST = rf"(?:[A-Za-z0-9_-]+|\[-?\d+\]|{_QUOTED})"
_NEXT = rf"(?:\.[A-Za-z0-9_-]+|\[-?\d+\]|{_QUOTED})"
_PATH = re.compile(rf"{_FIRST}{_NEXT}*: \S")


def assert_located(errors: list[str], path: Path) -> None:
    assert errors, "a ConfigError without a single error"
    at_file = re.compile(rf"{re.escape(str(path))}(?::\d+:\d+)?: \S")
    for line in errors:
        assert "\n" not in line and "Traceback" not in line, line
        assert at_file.match(line) or _PATH.match(line), f"not located: {line!r}"


# --- generated configs -----------------------------------------------------------------------

_WORDS = st.sampled_from(
    ["web", "db", "api", "ops", "log", "x", "", " ", "a b", "SEV-1", "critical", "info", "GET", "post",
     "2xx", "200", "http://127.0.0.1:9/", "https://u:p@h/x?token=1", "ftp://h/", "127.0.0.1:9810", "[::1]:1",
     "0.0.0.0:80", "unix:///var/run/docker.sock", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!",
     "${TOKEN}", "${MISSING}", "${EMPTY:-d}", "$${x}", "${", "./state", "/dev/null", "~/x", "Bearer t",
     "9" * 40, "²", "\x00", "a\nb", "1e999", ".inf", "restart_container"]
)
_DURATIONS = st.one_of(
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h|d)", fullmatch=True),
    st.sampled_from(["0s", "-1s", "10", "3651d", "9" * 400 + "s", "1h30m"]),
)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(), _WORDS, _DURATIONS,
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)
_JUNK = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(_WORDS, st.integers()), inner, max_size=3),
    max_leaves=8,
)


def _some(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of ``keys``, each with its plausible value or junk, now and then an unknown key."""
    return st.fixed_dictionaries(
        {}, optional={key: st.one_of(value, _JUNK) for key, value in keys.items()} | {"intervall": _JUNK}
    )


_COUNT = st.one_of(st.integers(-2, 5), st.sampled_from([1_000_000, 1_000_001, 10**26]))
_HEADERS = st.dictionaries(st.sampled_from(["Authorization", "X-Token", "a b", "User-Agent"]), _WORDS, max_size=2)
_AGENT = _some({
    "name": _WORDS, "state_dir": _WORDS, "heal": st.booleans(), "max_concurrent_checks": _COUNT,
    "log_level": _WORDS, "api": _some({"listen": _WORDS, "token": _WORDS, "public_url": _WORDS}),
    "retention": _some({"results_per_check": _COUNT, "delivered_events": _DURATIONS}),
    "delivery": _some({"retry_initial": _DURATIONS, "retry_max": _DURATIONS, "evidence_wait": _DURATIONS}),
})
_DEFAULTS = _some({
    "interval": _DURATIONS, "timeout": _DURATIONS, "open_after": _DURATIONS, "resolve_after": _COUNT,
    "severity": _WORDS, "notify": st.lists(_WORDS, max_size=2),
})
_CHECK = st.builds(
    lambda kind, name, rest: {"name": name, "type": kind, **rest},
    st.sampled_from(["http", "tcp", "container", "ftp"]),
    _WORDS,
    _some({
        "url": _WORDS, "host": _WORDS, "port": st.one_of(st.integers(-1, 70000), _COUNT), "container": _WORDS,
        "interval": _DURATIONS, "timeout": _DURATIONS, "headers": _HEADERS, "method": _WORDS,
        "expect": _some({"status": st.one_of(_WORDS, st.lists(st.integers(99, 600), max_size=2)),
                         "body_contains": _WORDS, "max_latency": _DURATIONS}),
        "heal": _some({"restart_container": _WORDS, "max_restarts": _COUNT, "within": _DURATIONS}),
        "severity": _WORDS, "notify": st.lists(_WORDS, max_size=2),
    }),
)
_NOTIFIER = st.builds(
    lambda kind, name, rest: {"name": name, "type": kind, **rest},
    st.sampled_from(["webhook", "file", "sms"]),
    _WORDS,
    _some({"url": _WORDS, "secret": _WORDS, "path": _WORDS, "headers": _HEADERS, "timeout": _DURATIONS}),
)
CONFIGS = _some({
    "agent": _AGENT, "docker": _some({"url": _WORDS, "timeout": _DURATIONS}), "defaults": _DEFAULTS,
    "checks": st.lists(_CHECK, max_size=3), "notifiers": st.lists(_NOTIFIER, max_size=2),
})

# --- mutations of the text -------------------------------------------------------------------

_PIECES = st.sampled_from(
    ["&a ", "*a", "*b", "<<: *a\n", "&b [*a, *a, *a]\n", "[", "]", "{", "}", ": ", "- ", "\n", "  ", "\t", "? ",
     "!!int ", "!!float ", "!!bool ", "!!binary ", "!!timestamp ", "!!set ", "!!omap ", "!!python/name:os.system ",
     "|", ">", "'", '"', "#", "%YAML 1.1\n", "---\n", "...\n", "\x00", "\x01", "\x7f", "\x85", "\ufeff", "\\0",
     "\\x00", "${", "9" * 120, "0x" + "f" * 120, "2001-13-45", "1:2:3", ".nan", "~", "@", "`", "\u00e9", "\U0001f600"]
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = yaml.safe_dump(draw(CONFIGS), allow_unicode=draw(st.booleans()), default_flow_style=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "insert", "delete", "duplicate", "cut"]))
        if kind == "insert":
            text = text[:at] + draw(_PIECES) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)) :]
        elif kind == "duplicate":
            text = text[:at] + text[at : at + draw(st.integers(1, 40))] * draw(st.integers(2, 5)) + text[at:]
        else:
            text = text[:at]
    return text


def _load(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path, ENVIRON)
    except ConfigError as exc:
        assert str(exc) == "\n".join(exc.errors)
        assert_located(exc.errors, path)
        expected = 2
    else:
        assert isinstance(config, Config)
        expected = 0
    # The command itself, in this process: the exit code, and nothing beyond the errors it prints.
    with pytest.MonkeyPatch.context() as env:
        for name, value in ENVIRON.items():
            env.setenv(name, value)
        env.delenv("MISSING", raising=False)
        capsys.readouterr()
        assert cli.main(["check-config", "-c", str(path)]) == expected
        out, err = capsys.readouterr()
    assert "Traceback" not in out + err


_FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(text=mutated())
def test_any_mutated_config_loads_or_gives_located_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    _load(tmp_path, text, capsys)


@_FUZZ
@given(text=st.text(st.sampled_from(list("ab:-[]{}&*!,?|>'\"#\n \t0123456789.~@%\x00\x01\\")), max_size=80))
def test_any_short_text_loads_or_gives_located_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    _load(tmp_path, text, capsys)


def test_bytes_that_are_not_utf8_are_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"agent: {name: \xff\xfe}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ENVIRON)
    assert info.value.errors == [f"{path}: not UTF-8 text"]


# --- the command, in a process of its own ----------------------------------------------------

_MEASURE = textwrap.dedent(
    """\
    import resource, subprocess, sys
    # A ceiling, so that a regression fails this test instead of exhausting the machine.
    limit = 1 << 30
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=cap)
    sys.stderr.write(done.stderr)
    print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """
)


def test_check_config_refuses_an_alias_bomb_at_once_in_little_memory(tmp_path: Path) -> None:
    # 9 aliases per level, 8 levels: 43 million values once expanded.
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nchecks: *a8\n")

    command = [sys.executable, "-m", "agent.cli", "check-config", "-c", str(path)]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, cwd=ROOT, timeout=60
    )

    code, max_rss_kb = (int(word) for word in done.stdout.split())
    assert code == 2, done.stderr
    assert done.stderr.splitlines()[1:] == [f"  {path}:6:10: aliases expand to more than 100,000 values (an alias bomb?)"]
    assert "Traceback" not in done.stderr
    assert max_rss_kb < 200 * 1024  # about 40 MB; the bomb used to take 500 MB and more
