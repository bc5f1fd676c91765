"""The condition language: parsed at load time with located errors, judged against real targets."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, load_config
from checks.base import CheckContext
from checks.conditions import (
    HTTP_SUBJECTS,
    TCP_SUBJECTS,
    Baseline,
    Condition,
    DurationValue,
    Observed,
    ParseError,
    Subject,
    evaluate,
    parse,
)
from checks.http import HttpCheck, HttpCheckConfig

ServerFactory = Callable[..., Awaitable[TestServer]]

# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "subject", "op", "value"),
    [
        ("status in [200, 204]", Subject("status"), "in", (200, 204)),
        ("status == \"2xx\"", Subject("status"), "==", "2xx"),
        ("latency < 300ms", Subject("latency"), "<", DurationValue(0.3)),
        ("latency <= 1.5s", Subject("latency"), "<=", DurationValue(1.5)),
        ("latency < 2x baseline", Subject("latency"), "<", Baseline(2.0)),
        ("latency >= 1.5x   baseline", Subject("latency"), ">=", Baseline(1.5)),
        ('json.status == "UP"', Subject("json", ("status",)), "==", "UP"),
        ("json.checks[0].ok == true", Subject("json", ("checks", 0, "ok")), "==", True),
        ('json["a.b"][2] != null', Subject("json", ("a.b", 2)), "!=", None),
        ("json == [1, 2]", Subject("json"), "==", (1, 2)),
        ("json.count > -1.5e2", Subject("json", ("count",)), ">", -150.0),
        ('header.Content-Type contains "json"', Subject("header", ("content-type",)), "contains", "json"),
        ("cert.days_left > 14", Subject("cert.days_left"), ">", 14),
        ("tcp.banner matches '^SSH-2\\\\.0'", Subject("tcp.banner"), "matches", "^SSH-2\\.0"),
        ('body not in ["", "error"]', Subject("body"), "not in", ("", "error")),
        ('  body   contains   "a \\"quoted\\" word"  ', Subject("body"), "contains", 'a "quoted" word'),
    ],
)
def test_every_form_parses_to_its_tree(text: str, subject: Subject, op: str, value: Any) -> None:
    condition = parse(text)

    assert (condition.subject, condition.op, condition.value) == (subject, op, value)
    assert str(condition) == text.strip()  # failure messages quote it as written


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "column 1: empty condition (expected SUBJECT OP VALUE, like: status == 200)"),
        ("stauts == 200", "column 1: unknown subject 'stauts' (did you mean 'status'?)"),
        ("status = 200", "column 8: use == to compare"),
        ("status", "column 7: expected an operator (==, !=, <, <=, >, >=, in, not in, contains, matches) after the subject"),
        ("status is 200", "column 8: expected an operator (==, !=, <, <=, >, >=, in, not in, contains, matches), got 'is'"),
        ("status not 200", "column 12: expected 'in' after 'not'"),
        ("status ==", "column 10: expected a value after the operator"),
        ('json.status == UP', 'column 16: expected a value, got \'UP\' (quote a string: "UP")'),
        ('json.status == "UP', "column 16: unterminated string"),
        ("json.status == 'a\\q'", "column 18: unknown escape \\q (use \\\\ for a backslash)"),
        ("status == 200 204", "column 15: unexpected '204' after the value"),
        ("status in 200", "column 11: in needs a list, like [200, 204]"),
        ("status in []", "column 12: empty list"),
        ("status in [200, 204", "column 20: unclosed list (expected ']')"),
        ("status in [200 204]", "column 16: expected ',' or ']', got '204]'"),
        ("json in [[1]]", "column 10: a list holds numbers, strings, true, false or null, not lists"),
        ("status == [200]", "column 8: status is never a list: use in or not in"),
        ('status contains "2"', "column 8: status is a number: use ==, !=, <, <=, >, >=, in or not in"),
        ('status == "ok"', 'column 11: status compares with a code like 200 or a class like "2xx"'),
        ("latency == 300ms", "column 9: latency compares with <, <=, > or >="),
        ("latency < 300", "column 11: latency compares with a duration like 300ms or with Nx baseline"),
        ("latency < 3sec", "column 11: invalid duration '3sec' (a number and one of ms, s, m, h, d, like 300ms)"),
        ("latency < 2x", "column 13: expected 'baseline' after the factor (like 2x baseline)"),
        ("latency < 0x baseline", "column 11: the factor of baseline must be a number above 0"),
        ("json.t < 2x baseline", "column 10: only latency compares with a baseline"),
        ("json.t < 300ms", "column 10: only latency compares with a duration"),
        ('json.t < "a"', "column 10: < compares with a number"),
        ('body > 3', "column 6: body is text: use ==, !=, in, not in, contains or matches"),
        ("body contains 3", "column 15: body is text: contains needs a quoted string"),
        ("header.x matches 3", "column 18: matches needs a quoted regular expression"),
        ('body matches "("', "column 14: invalid regular expression: missing ), unterminated subpattern at position 0"),
        ("json. == 1", 'column 6: expected a key after \'.\' (quote odd keys: json["a b"])'),
        ("json[x] == 1", 'column 6: expected an index like [0] or a quoted key like ["a.b"]'),
        ("json[0 == 1", "column 7: expected ']'"),
        ("status.code == 1", "column 7: status has no fields"),
        ("header == 1", "column 7: expected .NAME after header (like header.content-type)"),
        ("cert.expiry > 1", "column 1: expected cert.days_left"),
        ("json.n == 1" + "0" * 200, "column 11: number too long"),
        ("json.n == 1e999", "column 11: number too large"),
        ("status == 200\nbody contains 'x'", "column 14: a condition is one line"),
    ],
)
def test_a_bad_condition_says_where_and_what(text: str, error: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(text)

    assert str(caught.value) == error


def test_a_subject_the_check_type_lacks_is_refused_at_the_subject() -> None:
    with pytest.raises(ParseError, match=r"^column 1: tcp.banner is not available on http checks "
                                         r"\(status, latency, body, json.…, header.…, cert.days_left are\)$"):
        parse('tcp.banner contains "x"', HTTP_SUBJECTS, check_type="http")
    with pytest.raises(ParseError, match=r"^column 1: status is not available on tcp checks \(latency, tcp.banner are\)$"):
        parse("status == 200", TCP_SUBJECTS, check_type="tcp")


_PIECES = st.sampled_from(
    ["status", "latency", "body", "json", "header", "cert", "tcp", ".", "[", "]", "0", "\"", "'", "\\", "==", "!=",
     "<", "<=", ">", ">=", "in", "not", "contains", "matches", "x", "baseline", "300ms", "1.5e3", "-", ",", " ",
     "true", "null", "days_left", "banner", "status == 200", "(", "*", "\n", "é", "1" * 120]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(_PIECES, max_size=12).map("".join)))
def test_any_text_parses_or_fails_with_a_located_error(text: str) -> None:
    try:
        condition = parse(text)
    except ParseError as exc:
        assert 1 <= exc.column <= len(text) + 1
        assert str(exc).startswith(f"column {exc.column}: ")
    else:
        assert isinstance(condition, Condition)
        assert str(condition) == text.strip()
        assert parse(str(condition)) == condition  # what a message quotes reads back the same
        evaluate(condition, Observed(status=200, latency=0.1, body=b'{"a": [1]}', headers={}, banner=b"x"))


# --- the config loader -------------------------------------------------------------------------


def load_errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return caught.value.errors


def test_conditions_are_parsed_when_the_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""\
        checks:
          - name: api
            type: http
            url: https://127.0.0.1:8443/health
            conditions:
              - status in [200, 204]
              - latency < 300ms
              - json.status == "UP"
              - 'header.content-type contains "json"'
              - cert.days_left > 14
          - name: ssh
            type: tcp
            host: 127.0.0.1
            port: 22
            conditions: ['tcp.banner matches "^SSH-"']
    """))

    config = load_config(path, {})

    api = config.check("api")
    assert isinstance(api, HttpCheckConfig)
    assert [c.subject.kind for c in api.conditions] == ["status", "latency", "json", "header", "cert.days_left"]
    assert api.model_dump()["conditions"][2] == 'json.status == "UP"'
    assert config.check("ssh").model_dump()["conditions"] == ['tcp.banner matches "^SSH-"']


def test_a_bad_condition_is_a_config_error_at_its_item_with_its_column(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, """\
        checks:
          - name: api
            type: http
            url: http://127.0.0.1:8080/
            conditions:
              - status in [200, 204]
              - json.status == UP
              - 42
              - tcp.banner contains "x"
              - cert.days_left > 14
          - name: db
            type: tcp
            host: 127.0.0.1
            port: 5432
            conditions: [status == 200]
    """)

    assert errors == [
        "checks[0].conditions[1]: column 16: expected a value, got 'UP' (quote a string: \"UP\")",
        "checks[0].conditions[2]: expected a string (quote a condition that YAML reads otherwise)",
        "checks[0].conditions[3]: column 1: tcp.banner is not available on http checks "
        "(status, latency, body, json.…, header.…, cert.days_left are)",
        "checks[1].conditions[0]: column 1: status is not available on tcp checks (latency, tcp.banner are)",
    ]


def test_cert_days_left_needs_an_https_url(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, """\
        checks:
          - {name: api, type: http, url: "http://127.0.0.1:8080/", conditions: [status == 200, cert.days_left > 14]}
    """)

    assert errors == ["checks[0].conditions[1]: cert.days_left needs an https:// url"]


# --- judged against a real target --------------------------------------------------------------

DOCUMENT = {
    "status": "UP",
    "checks": [{"name": "db", "ok": True}, {"name": "cache", "ok": False}],
    "count": 3,
    "ratio": 0.5,
    "version": "1.2.3",
    "tags": ["blue", "green"],
    "nothing": None,
    "api_token": "tok-9f8e7d6c5b4a",
}


async def document(request: web.Request) -> web.Response:
    response = web.json_response(DOCUMENT, headers={"X-Count": "42", "X-Api-Key": "k-1234567890"})
    return response


async def plain(request: web.Request) -> web.Response:
    return web.Response(text="all good here", status=int(request.query.get("status", "200")))


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> TestServer:
    app = web.Application()
    app.router.add_get("/json", document)
    app.router.add_get("/plain", plain)
    return await aiohttp_server(app)


@pytest.fixture
async def ctx() -> AsyncIterator[CheckContext]:
    context = CheckContext()
    yield context
    await context.close()


def http_config(url: str, *conditions: str, **overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = dict(
        name="web", type="http", interval=10.0, timeout=5.0, open_after=0.0, resolve_after=1,
        severity="high", notify=[], container=None, heal=None, url=url, method="GET", headers={},
        verify_tls=True, ca_file=None, expect=None,
        conditions=[parse(c, HTTP_SUBJECTS, check_type="http") for c in conditions],
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


async def judge(target: TestServer, ctx: CheckContext, path: str, *conditions: str) -> tuple[bool, str]:
    result = await HttpCheck(http_config(str(target.make_url(path)), *conditions), ctx).run()
    return result.ok, result.message


@pytest.mark.parametrize(
    ("condition", "seen"),
    [
        # status
        ("status == 200", None), ("status == 201", "200"),
        ("status != 500", None), ("status != 200", "200"),
        ('status == "2xx"', None), ('status in [301, "5xx"]', "200"),
        ("status < 300", None), ("status < 200", "200"),
        ("status <= 200", None), ("status <= 199", "200"),
        ("status > 199", None), ("status > 200", "200"),
        ("status >= 200", None), ("status >= 201", "200"),
        ("status in [200, 204]", None), ("status in [201, 204]", "200"),
        ("status not in [500, 503]", None), ("status not in [200]", "200"),
        # json
        ('json.status == "UP"', None), ('json.status == "DOWN"', '"UP"'),
        ('json.status != "DOWN"', None), ('json.status != "UP"', '"UP"'),
        ("json.checks[0].ok == true", None), ("json.checks[1].ok == true", "false"),
        ('json.checks[1].name in ["cache", "queue"]', None), ('json.checks[1].name not in ["cache"]', '"cache"'),
        ("json.count > 2", None), ("json.count > 3", "3"),
        ("json.count >= 3", None), ("json.count < 3", "3"),
        ("json.count <= 3", None), ("json.ratio <= 0.4", "0.5"),
        ("json.count == 3.0", None), ('json.count == "3"', "3"),
        ("json.nothing == null", None), ("json.nothing != null", "null"),
        ('json.tags contains "green"', None), ('json.tags contains "red"', '["blue", "green"]'),
        ('json.version matches "^1\\\\."', None), ('json.version matches "^2\\\\."', '"1.2.3"'),
        ('json.tags == ["blue", "green"]', None), ("json.count == true", "3"),
        ("json.missing == 1", "nothing"), ("json.checks[7].ok == true", "nothing"),
        ('json.api_token == "x"', "[redacted]"),
        # header
        ('header.content-type contains "json"', None), ('header.Content-Type contains "xml"', '"application/json; charset=utf-8"'),
        ("header.x-count == 42", None), ("header.x-count > 50", '"42"'),
        ('header.x-count matches "^4"', None), ("header.x-missing == 1", "no such header"),
        ('header.x-api-key == "no"', "[redacted]"),
        # latency
        ("latency < 10s", None), ("latency <= 1m", None),
    ],
)
async def test_every_subject_and_operator_against_a_json_target(target, ctx, condition: str, seen: str | None) -> None:
    ok, message = await judge(target, ctx, "/json", condition)

    if seen is None:
        assert ok, message
        assert message == "HTTP 200"
    else:
        assert not ok
        assert message == f"HTTP 200: condition failed: {condition} (got {seen})"


async def test_a_slow_answer_fails_a_latency_condition_quoting_the_latency(target, ctx) -> None:
    ok, message = await judge(target, ctx, "/json", "latency > 1m")

    assert not ok
    assert message.startswith("HTTP 200: condition failed: latency > 1m (got ")
    assert message.endswith("ms)")


async def test_a_body_that_is_not_json_fails_every_json_condition(target, ctx) -> None:
    ok, message = await judge(target, ctx, "/plain", "json.status != \"DOWN\"")

    assert not ok
    assert message == 'HTTP 200: condition failed: json.status != "DOWN" (got a body that is not JSON)'


async def test_every_failing_condition_is_named_in_order(target, ctx) -> None:
    ok, message = await judge(target, ctx, "/json", 'json.status == "DOWN"', "json.count < 3", "json.ratio < 1")

    assert not ok
    assert message == (
        'HTTP 200: condition failed: json.status == "DOWN" (got "UP"); condition failed: json.count < 3 (got 3)'
    )


async def test_a_status_condition_replaces_the_default_2xx(target, ctx) -> None:
    assert await judge(target, ctx, "/plain?status=503", "status == 503") == (True, "HTTP 503")
    assert await judge(target, ctx, "/plain?status=503", 'body contains "good"') == (False, "HTTP 503")


async def test_a_failing_status_condition_is_reported_alone(target, ctx) -> None:
    ok, message = await judge(target, ctx, "/plain?status=500", "status in [200, 204]", 'body contains "nope"')

    assert not ok
    assert message == "HTTP 500: condition failed: status in [200, 204] (got 500)"


async def test_expect_and_conditions_are_judged_together(target, ctx) -> None:
    expect = SimpleNamespace(status=[200], body_contains="nope", max_latency=None)
    config = http_config(str(target.make_url("/plain")), 'body contains "missing"', expect=expect)

    result = await HttpCheck(config, ctx).run()

    assert result.message == (
        "HTTP 200: body does not contain 'nope'; condition failed: body contains \"missing\" (got \"all good here\")"
    )


@pytest.mark.parametrize(
    ("baseline", "condition", "ok"),
    [
        (None, "latency < 2x baseline", True),  # no baseline yet: holds
        (None, "latency > 2x baseline", True),  # ... whichever way it is written
        (60.0, "latency < 2x baseline", True),
        (1e-9, "latency < 2x baseline", False),
    ],
)
async def test_a_baseline_condition_reads_the_checks_baseline(target, ctx, baseline, condition, ok) -> None:
    asked: list[str] = []

    def baseline_of(check: str) -> float | None:
        asked.append(check)
        return baseline

    ctx.baseline = baseline_of
    result = await HttpCheck(http_config(str(target.make_url("/json")), condition), ctx).run()

    assert result.ok is ok, result.message
    assert asked == ["web"]
    if not ok:
        assert result.message.startswith(f"HTTP 200: condition failed: {condition} (got ")
        assert result.message.endswith(", baseline 0ms)")


async def test_the_baseline_is_not_asked_for_when_no_condition_needs_it(target, ctx) -> None:
    asked: list[str] = []
    ctx.baseline = lambda check: asked.append(check)  # type: ignore[func-returns-value]

    ok, _ = await judge(target, ctx, "/json", "latency < 1m", 'json.status == "UP"')

    assert ok
    assert asked == []


@pytest.mark.parametrize(
    ("condition", "ok"),
    [
        ('body contains "good"', True), ('body contains "bad"', False),
        ('body matches "^all +good"', True), ('body matches "^good"', False),
        ('body == "all good here"', True), ('body == "all good"', False),
        ('body != "down"', True), ('body != "all good here"', False),
        ('body in ["down", "all good here"]', True), ('body not in ["all good here"]', False),
    ],
)
async def test_body_conditions_read_the_text(target, ctx, condition: str, ok: bool) -> None:
    assert await judge(target, ctx, "/plain", condition) == (
        (True, "HTTP 200") if ok else (False, f'HTTP 200: condition failed: {condition} (got "all good here")')
    )


async def test_a_long_body_is_quoted_short(aiohttp_server: ServerFactory, ctx) -> None:
    async def long(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    app = web.Application()
    app.router.add_get("/", long)
    server = await aiohttp_server(app)

    ok, message = await judge(server, ctx, "/", 'body contains "y"')

    assert not ok
    assert message == f'HTTP 200: condition failed: body contains "y" (got "{"x" * 120}…")'


def test_the_documented_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("#### Conditions", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "config.yaml"
    path.write_text(example)

    config = load_config(path, {})

    api, ssh = config.check("api"), config.check("ssh")
    assert [str(c) for c in api.conditions][-1] == "latency < 3x baseline"
    assert ssh.conditions[0].pattern is not None and ssh.conditions[0].pattern.pattern == "^SSH-2\\.0-"
