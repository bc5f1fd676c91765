"""Secret redaction: every exit (headers, URLs, JSON, text, bodies) masks what looks secret."""

from __future__ import annotations

import json

import pytest

from agent.logging import MaskSecrets
from agent.redact import (
    MIN_SECRET_LENGTH,
    REDACTED,
    is_secret_name,
    mask_values,
    redact_body,
    redact_headers,
    redact_json,
    redact_text,
    redact_url,
    secret_env_values,
    value_masker,
)


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASSWORD",
        "passwd",
        "X-Api-Key",
        "api_key",
        "apikey",
        "apiKey",
        "GITHUB_TOKEN",
        "accessToken",
        "aws_secret_access_key",
        "AWS_ACCESS_KEY_ID",
        "private_key",
        "privateKey",
        "client_secret",
        "Authorization",
        "X-Auth-Token",
        "basic_auth",
        "credentials",
        "session",
        "sessionId",
        "PHPSESSID",
        "JSESSIONID",
        "Set-Cookie",
        "MYSQL_PWD",
        "ssh_key",
        "KEY",
        "X-Amz-Signature",
        "passphrase",
    ],
)
def test_secret_names_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "keyboard",
        "monkey",
        "hotkeys",
        "Key-Count",
        "keyCount",
        "key_id",
        "author",
        "bypass",
        "passthrough",
        "PWD",  # the working directory, in nearly every container's environment
        "OLDPWD",
        "PATH",
        "HOSTNAME",
        "Content-Type",
        "user",
        "",
    ],
)
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"Authorization": "Bearer abc123", "Content-Type": "application/json"},
            {"Authorization": REDACTED, "Content-Type": "application/json"},
        ),
        ({"proxy-authorization": "Basic dXNlcjpwYXNz"}, {"proxy-authorization": REDACTED}),
        ({"Cookie": "sid=1; theme=dark"}, {"Cookie": REDACTED}),
        ({"Set-Cookie": "sid=abc; Path=/; HttpOnly"}, {"Set-Cookie": REDACTED}),
        ({"X-Api-Key": "k-123456", "X-Request-Id": "r-1"}, {"X-Api-Key": REDACTED, "X-Request-Id": "r-1"}),
        ({"X-Vault-Token": "hvs.abcd"}, {"X-Vault-Token": REDACTED}),
        ({"Key-Count": "3", "Keyboard-Layout": "us"}, {"Key-Count": "3", "Keyboard-Layout": "us"}),
        # A header that is not secret by name still loses user-info and token parameters.
        (
            {"Location": "https://bob:pw@127.0.0.1/cb?code=1&access_token=zzz"},
            {"Location": f"https://{REDACTED}@127.0.0.1/cb?code=1&access_token={REDACTED}"},
        ),
    ],
)
def test_redact_headers(headers: dict[str, str], expected: dict[str, str]) -> None:
    assert redact_headers(headers) == expected


def test_redact_headers_masks_known_secret_values_in_other_headers() -> None:
    headers = {"X-Debug": "db pass is s3cr3t-value", "Server": "nginx"}
    assert redact_headers(headers, ["s3cr3t-value"]) == {
        "X-Debug": f"db pass is {REDACTED}",
        "Server": "nginx",
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/health", "http://127.0.0.1:8080/health"),
        ("http://user:pw@127.0.0.1:8080/health", f"http://{REDACTED}@127.0.0.1:8080/health"),
        ("https://token-only@127.0.0.1/", f"https://{REDACTED}@127.0.0.1/"),
        (
            "http://127.0.0.1/s?q=shoes&api_key=abc&page=2",
            f"http://127.0.0.1/s?q=shoes&api_key={REDACTED}&page=2",
        ),
        (
            "http://127.0.0.1/s?access_token=a&Password=b&X-Amz-Signature=c",
            f"http://127.0.0.1/s?access_token={REDACTED}&Password={REDACTED}&X-Amz-Signature={REDACTED}",
        ),
        ("http://127.0.0.1/s?keyboard=us&monkey=1", "http://127.0.0.1/s?keyboard=us&monkey=1"),
        ("http://127.0.0.1/cb#access_token=abc&state=x", f"http://127.0.0.1/cb#access_token={REDACTED}&state=x"),
        ("http://127.0.0.1/s?flag&token=", f"http://127.0.0.1/s?flag&token={REDACTED}"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_json_masks_secret_keys_at_any_depth_and_copies() -> None:
    original = {
        "service": "api",
        "db": {"host": "127.0.0.1", "password": "hunter2", "pool": {"size": 5}},
        "clients": [{"name": "a", "apiKey": "k1"}, {"name": "b", "client_secret": {"v": 1}}],
        "key_count": 3,
        "keyboard": "us",
        "token": None,
        "note": "connect with Bearer abcdef123456",
    }
    snapshot = json.dumps(original, sort_keys=True)

    redacted = redact_json(original)

    assert redacted == {
        "service": "api",
        "db": {"host": "127.0.0.1", "password": REDACTED, "pool": {"size": 5}},
        "clients": [{"name": "a", "apiKey": REDACTED}, {"name": "b", "client_secret": REDACTED}],
        "key_count": 3,
        "keyboard": "us",
        "token": None,  # an absent secret reveals nothing
        "note": f"connect with Bearer {REDACTED}",
    }
    assert json.dumps(original, sort_keys=True) == snapshot, "the input must not be modified"


def test_redact_json_masks_secret_values_inside_ordinary_fields() -> None:
    redacted = redact_json({"msg": ["db said s3cr3t-value"]}, ["s3cr3t-value"])
    assert redacted == {"msg": [f"db said {REDACTED}"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PASSWORD=hunter2 USER=bob", f"PASSWORD={REDACTED} USER=bob"),
        ("db_password: hunter2, retries: 3", f"db_password: {REDACTED}, retries: 3"),
        ('{"password": "hun ter2", "user": "bob"}', f'{{"password": "{REDACTED}", "user": "bob"}}'),
        ("{'api_key': 'abc'}", f"{{'api_key': '{REDACTED}'}}"),
        ("--password=hunter2 --port=80", f"--password={REDACTED} --port=80"),
        ("Authorization: Bearer eyJhbGciOiJI.x.y", f"Authorization: {REDACTED}"),
        ("sending Bearer eyJhbGciOiJI.x.y to upstream", f"sending Bearer {REDACTED} to upstream"),
        ("Basic dXNlcjpwYXNzd29yZA== was refused", f"Basic {REDACTED} was refused"),
        ("Cookie: sid=1; theme=dark\nnext", f"Cookie: {REDACTED}\nnext"),
        ("fetch postgres://app:pw@127.0.0.1/db failed", f"fetch postgres://{REDACTED}@127.0.0.1/db failed"),
        (
            "GET https://127.0.0.1/cb?code=1&access_token=zzz&x=2 200",
            f"GET https://127.0.0.1/cb?code=1&access_token={REDACTED}&x=2 200",
        ),
        ("AccountKey=abcd==;EndpointSuffix=core", f"AccountKey={REDACTED};EndpointSuffix=core"),
        ("keyboard=us monkey=banana Key-Count: 3", "keyboard=us monkey=banana Key-Count: 3"),
        ("the key to success: hard work", "the key to success: hard work"),
        ("a basic health check passed", "a basic health check passed"),
        ("token=", "token="),
        ("", ""),
    ],
)
def test_redact_text_patterns(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("value s3cr3t-value twice s3cr3t-value", ["s3cr3t-value"], f"value {REDACTED} twice {REDACTED}"),
        # The URL-encoded form is masked too, as a secret in a query string appears that way.
        ("sent p%40ss and p@ss", ["p@ss"], f"sent {REDACTED} and {REDACTED}"),
        # A secret containing another is masked whole.
        ("long-secret-1234", ["secret", "long-secret-1234"], REDACTED),
        # Values shorter than four characters would shred every line; they are ignored.
        ("id=7 abc", ["7", "abc"], "id=7 abc"),
    ],
)
def test_redact_text_masks_given_secret_values(text: str, secrets: list[str], expected: str) -> None:
    assert redact_text(text, secrets) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            '{"user": "bob", "password": "hunter2", "nested": {"token": "t"}}',
            "application/json; charset=utf-8",
            {"user": "bob", "password": REDACTED, "nested": {"token": REDACTED}},
        ),
        ('[{"secret": 1}]', "application/problem+json", [{"secret": REDACTED}]),
        ('{"api_key": "k"}', None, {"api_key": REDACTED}),
    ],
)
def test_redact_body_json(body: str, content_type: str | None, expected: object) -> None:
    assert json.loads(redact_body(body, content_type)) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # Cut at the evidence size limit, so not valid JSON: still scrubbed as text.
        (
            '{"status": "down", "password": "hunter2", "det',
            "application/json",
            f'{{"status": "down", "password": "{REDACTED}", "det',
        ),
        (
            "user=bob&password=hunter2&remember=1",
            "application/x-www-form-urlencoded",
            f"user=bob&password={REDACTED}&remember=1",
        ),
        ("error: cannot log in with s3cr3t-value", "text/plain", f"error: cannot log in with {REDACTED}"),
        ("", "text/plain", ""),
    ],
)
def test_redact_body_text(body: str, content_type: str | None, expected: str) -> None:
    assert redact_body(body, content_type, ["s3cr3t-value"]) == expected


def test_redact_body_json_masks_secret_values_in_ordinary_fields() -> None:
    body = json.dumps({"error": "bad login s3cr3t-value"})
    assert json.loads(redact_body(body, "application/json", ["s3cr3t-value"])) == {
        "error": f"bad login {REDACTED}"
    }


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, []),
        (["PATH=/usr/bin", "PWD=/app", "HOSTNAME=api"], []),
        (["API_TOKEN=s3cr3t-value", "DB_PASSWORD=hunter22", "LANG=C.UTF-8"], ["s3cr3t-value", "hunter22"]),
        (["AUTH_ENABLED=true", "SESSION_SECURE=off", "EMPTY_SECRET=", "NOEQUALS"], []),
        (["DATABASE_URL=postgres://app:p%40ss@127.0.0.1/app"], ["p%40ss", "p@ss"]),
        (["A_TOKEN=same", "B_TOKEN=same"], ["same"]),
    ],
)
def test_secret_env_values(env: list[str] | None, expected: list[str]) -> None:
    assert secret_env_values(env) == expected


def test_mask_values_masks_each_value_plain_and_url_encoded_longest_first() -> None:
    text = "token=ab/cd+ef&u=ab%2Fcd%2Bef&again=ab/cd+ef-longer"
    assert mask_values(text, ["ab/cd+ef", "ab/cd+ef-longer"]) == (
        f"token={REDACTED}&u={REDACTED}&again={REDACTED}"
    )


def test_mask_values_ignores_values_too_short_to_mask_safely() -> None:
    short = "x" * (MIN_SECRET_LENGTH - 1)
    assert mask_values(f"a {short} b", [short]) == f"a {short} b"
    assert value_masker([])("nothing to mask") == "nothing to mask"


def test_log_events_mask_configured_secrets_with_the_same_rule() -> None:
    event = MaskSecrets(["hunter22", "abc"])(None, "info", {"event": "login hunter22 abc", "n": 1})
    assert event == {"event": f"login {REDACTED} abc", "n": 1}
