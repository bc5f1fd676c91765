"""Masks secrets in everything that leaves the agent: evidence bundles, payloads, log lines.

Evidence is built from what a failing service said (response headers and body, container logs,
health-probe output), and services say secrets more often than anyone intends. These pure
functions are the one place that decides what looks secret, so every exit shares one rule set.
They err on the side of masking: a masked ``tokens_used`` costs a little detail, a leaked token
costs a rotation. No I/O here; everything is fast enough to run on the event loop.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

REDACTED = "[redacted]"

# Secret values shorter than this are not masked in free text: "ab" or "1" would shred every line.
MIN_SECRET_LENGTH = 4

# Terms that mean "secret" wherever they occur in a name (DB_PASSWORD, GITHUB_TOKEN, apiKey,
# aws_secret_access_key, X-Amz-Credential).
_ANYWHERE = (
    r"passw(?:or)?d|passphrase|secret|credential|token|session[_\-. ]?id|sessid"
    r"|api[_\-. ]?key|access[_\-. ]?key|private[_\-. ]?key|priv[_\-. ]?key|client[_\-. ]?key"
)
# Terms that mean "secret" only as a whole word part, because as substrings they sit inside
# ordinary words (monkey, keyboard, author, bypass, possess).
_WORD = (
    r"auth|authn|authz|authorization|authentication|oauth|pass|sessions?"
    r"|cookies?|signature|sig|jwt|bearer|dsn|otp|salt"
)
# A bare "key" followed by one of these is metadata about a key, not the key (Key-Count, key_id).
_KEY_METADATA = r"count|id|ids|name|names|type|size|len|length|format|field|fields|prefix|path|file"

SECRET_NAME = re.compile(
    rf"""
    (?:{_ANYWHERE})
    | (?<![a-z])(?:{_WORD})(?![a-z])
    | (?<![a-z])keys?(?![a-z])(?![_\-. ](?:{_KEY_METADATA})(?![a-z]))
    | (?<=[_\-. ])pwd(?![a-z])            # DB_PWD, MYSQL_PWD; bare PWD is the working directory
    | (?<![a-z])pwd(?=[_\-. ][a-z])
    """,
    re.IGNORECASE | re.VERBOSE,
)
"""Matches names that look like they hold a secret.

Word parts are separated by ``_``, ``-``, ``.``, a space, a digit, or the start or end of the
name. Works on raw names except for camelCase word parts (``sessionId``); use
``is_secret_name`` for those, which splits camelCase first.
"""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# Headers that carry credentials whatever they are called in a given deployment.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# Values of secret-named variables that are switches, not secrets (AUTH_ENABLED=true):
# masking them would blank every "true" in every log line.
_NOT_SECRETS = frozenset(
    {"true", "false", "null", "none", "yes", "no", "on", "off", "enabled", "disabled"}
)


def is_secret_name(name: str) -> bool:
    """Whether a header, variable, parameter or key name looks like it holds a secret."""
    if not name:
        return False
    return SECRET_NAME.search(_CAMEL.sub("_", name)) is not None


def redact_headers(headers: Mapping[str, str], secret_values: Iterable[str] = ()) -> dict[str, str]:
    """A copy of ``headers`` with credential headers masked and the rest scrubbed as text."""
    out: dict[str, str] = {}
    values = _value_key(secret_values)
    for name, value in headers.items():
        if name.lower() in _SECRET_HEADERS or is_secret_name(name):
            masked = REDACTED
        else:
            # A Location or Link header can still carry user-info or a token parameter.
            masked = redact_text(str(value), values)
        out[name] = f"{out[name]}, {masked}" if name in out and masked != REDACTED else masked
    return out


def redact_url(url: str) -> str:
    """``url`` with user-info masked and secret-named query (and fragment) parameters masked."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:  # an unparsable URL (bad IPv6 literal) is still scrubbed as text
        return redact_text(url)
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rpartition("@")[2]
    # OAuth's implicit flow puts access_token in the fragment.
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def url_secrets(url: str) -> list[str]:
    """The credentials inside ``url``, to mask wherever they turn up on their own.

    The user-info password (or the user name when there is no password: ``https://TOKEN@host``)
    and the values of secret-named query and fragment parameters, each as written and decoded.
    A service that echoes one of them back (in a body, an error) is masked like any configured
    secret, not only where the whole URL appears.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: dict[str, None] = {}  # ordered set
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and userinfo:
        user, colon, password = userinfo.partition(":")
        credential = password if colon and password else user
        found.update(dict.fromkeys((credential, unquote_plus(credential))))
    for params in (parts.query, parts.fragment):
        for param in params.split("&"):
            name, sep, value = param.partition("=")
            if sep and value and is_secret_name(unquote_plus(name)):
                found.update(dict.fromkeys((value, unquote_plus(value))))
    return list(found)


def redact_json(obj: Any, secret_values: Iterable[str] = ()) -> Any:
    """A deep copy of a JSON-like value with secret-named keys' values masked at any depth.

    String values elsewhere are scrubbed as text (``secret_values``, ``password=...``, bearer
    tokens, URL user-info), so a secret inside an innocently named field is masked too.
    """
    return _redact_json(obj, _value_key(secret_values))


def redact_text(text: str, secret_values: Iterable[str] = ()) -> str:
    """Free text (a log line, a body) with secrets masked.

    Masks every occurrence of each of ``secret_values`` (as ``mask_values`` does),
    ``name=value`` / ``name: value`` / ``"name": "value"`` where the name looks secret,
    ``Bearer`` / ``Basic`` credentials, and user-info in URLs.
    """
    if not text:
        return text
    text = mask_values(text, secret_values)
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    text = _redact_pairs(text)
    return _AUTH_SCHEME.sub(lambda m: f"{m.group('bearer') or m.group('basic')} {REDACTED}", text)


def mask_values(text: str, secret_values: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value, plain or URL-encoded, masked.

    Values shorter than ``MIN_SECRET_LENGTH`` are ignored, and nothing else is touched: this is
    for text where only the configured secrets are a concern (a log event field, an error
    detail). ``redact_text`` applies the same rule along with the name-based ones.
    """
    return value_masker(secret_values)(text)


def value_masker(secret_values: Iterable[str]) -> Callable[[str], str]:
    """``mask_values`` with the values bound once, for a caller that masks many texts."""
    pattern = _values_pattern(_value_key(secret_values))
    if pattern is None:
        return _unchanged
    return functools.partial(pattern.sub, REDACTED)


def redact_body(body: str, content_type: str | None, secret_values: Iterable[str] = ()) -> str:
    """A response body with secrets masked: JSON structurally, anything else as text.

    Bodies are often cut at a size limit, so JSON that does not parse falls back to text
    scrubbing, which still catches ``"password": "..."``.
    """
    if not body:
        return body
    values = _value_key(secret_values)
    ctype = (content_type or "").lower()
    looks_json = "json" in ctype or (not ctype and body.lstrip()[:1] in ("{", "["))
    if looks_json:
        try:
            parsed = json.loads(body)
        except ValueError:
            pass
        else:
            return json.dumps(_redact_json(parsed, values), ensure_ascii=False)
    return redact_text(body, values)


def secret_env_values(env: list[str] | None) -> list[str]:
    """The values worth masking from a container's ``Config.Env`` (``["NAME=value", ...]``).

    Those of secret-named variables, plus passwords embedded in URL-valued ones
    (``DATABASE_URL=postgres://app:pw@db/app``). Switch-like values (``true``, ``off``) are left
    out. The environment itself is never copied anywhere.
    """
    found: dict[str, None] = {}  # ordered set
    for entry in env or ():
        name, sep, value = entry.partition("=")
        if not sep or not value:
            continue
        if is_secret_name(name) and value.lower() not in _NOT_SECRETS:
            found[value] = None
        for match in _URL_USERINFO.finditer(value):
            _, colon, password = match.group("userinfo").partition(":")
            if colon and password:
                found[password] = None
                found[unquote_plus(password)] = None
    return list(found)


# --- internals -------------------------------------------------------------------------------

_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/@?#\[\]]+)@"
)

# Bearer tokens anywhere; Basic only capitalised and long, as "basic" is an ordinary word.
_AUTH_SCHEME = re.compile(
    r"\b(?:(?P<bearer>[Bb]earer|BEARER)[ \t]+[A-Za-z0-9\-._~+/]{4,}"
    r"|(?P<basic>Basic)[ \t]+[A-Za-z0-9+/]{8,})=*"
)

# The start of a name=value / name: value pair; the value is parsed by hand after it so that a
# non-secret pair does not swallow a secret one that follows (https://h/?token=...).
_PAIR_START = re.compile(
    r"""(?<![\w.])(?P<quote>["']?)(?P<name>[A-Za-z_][\w.\-]*)(?P=quote)(?P<sep>[ \t]*[:=][ \t]*)"""
)
_QUOTED_VALUE = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
_UNQUOTED_VALUE = re.compile(
    r"(?:(?:[Bb]earer|BEARER|Basic|[Tt]oken|Digest)[ \t]+)?[^\s&,;\"'<>(){}\[\]]+"
)
# Headers whose whole value is a credential, however many parts it has (Cookie: a=1; b=2).
_WHOLE_LINE_NAMES = frozenset({"cookie", "set-cookie", "authorization", "proxy-authorization"})
_REST_OF_LINE = re.compile(r"[^\r\n]+")


def _redact_pairs(text: str) -> str:
    out: list[str] = []
    pos = 0
    while True:
        match = _PAIR_START.search(text, pos)
        if match is None:
            break
        end = match.end()
        if not is_secret_name(match.group("name")):
            out.append(text[pos:end])
            pos = end
            continue
        if match.group("name").lower() in _WHOLE_LINE_NAMES and ":" in match.group("sep"):
            value = _REST_OF_LINE.match(text, end)
        else:
            value = _QUOTED_VALUE.match(text, end) or _UNQUOTED_VALUE.match(text, end)
        if value is None or value.group() in (REDACTED, '""', "''"):
            out.append(text[pos:end])
            pos = end
            continue
        raw = value.group()
        if raw[0] in "\"'" and raw[-1] == raw[0] and len(raw) >= 2:
            masked = raw[0] + REDACTED + raw[0]
        else:
            masked = REDACTED
        out.append(text[pos:end] + masked)
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)


def _redact_params(query: str) -> str:
    """Masks secret-named ``a=b&c=d`` parameters, leaving the rest byte for byte."""
    if not query or "=" not in query:
        return query
    parts = []
    for param in query.split("&"):
        name, sep, _ = param.partition("=")
        if sep and is_secret_name(unquote_plus(name)):
            param = f"{name}={REDACTED}"
        parts.append(param)
    return "&".join(parts)


def _redact_json(obj: Any, values: tuple[str, ...]) -> Any:
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            if isinstance(key, str) and is_secret_name(key) and value not in (None, ""):
                out[key] = REDACTED
            else:
                out[key] = _redact_json(value, values)
        return out
    if isinstance(obj, (list, tuple)):
        return [_redact_json(item, values) for item in obj]
    if isinstance(obj, str):
        return redact_text(obj, values)
    return copy.deepcopy(obj)


def _unchanged(text: str) -> str:
    return text


def _value_key(secret_values: Iterable[str]) -> tuple[str, ...]:
    """A hashable, deduplicated form of the secret values, so their pattern can be cached."""
    return tuple(dict.fromkeys(v for v in secret_values if isinstance(v, str)))


@functools.lru_cache(maxsize=64)
def _values_pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation of every secret value and its URL-encoded forms, longest first.

    Longest first, so a secret that contains a shorter one is masked whole.
    """
    forms: set[str] = set()
    for value in values:
        if len(value) < MIN_SECRET_LENGTH:
            continue
        forms.update((value, quote(value, safe=""), quote_plus(value)))
    if not forms:
        return None
    return re.compile("|".join(re.escape(v) for v in sorted(forms, key=len, reverse=True)))
