"""The condition language of ``conditions:``: ``SUBJECT OP VALUE``, parsed once, evaluated per result.

A condition is parsed when the config is loaded (``parse``), so a typo is a located config error
(``checks[0].conditions[0]: column 13: …``) rather than a check that fails at run time, and a
probe only walks a small tree of dataclasses (``evaluate``). No ``eval``: the grammar is this::

    condition := subject op value
    subject   := status | latency | body | json path? | header.NAME | cert.days_left | tcp.banner
    path      := ( .KEY | [INDEX] | ["KEY"] )*
    op        := == | != | < | <= | > | >= | in | not in | contains | matches
    value     := number | duration (300ms) | "string" | 'string' | true | false | null
               | [value, …] | NUMBERx baseline

Pure: no I/O, no clock. A check fills an ``Observed`` with what its probe saw and asks
``evaluate`` whether each condition holds and what was seen, in the words of a failure message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, TypeAlias

from agent.config.model import Before
from agent.durations import format_duration, parse_duration
from agent.redact import REDACTED, is_secret_name, redact_text

__all__ = [
    "HTTP_SUBJECTS",
    "HttpCondition",
    "TCP_SUBJECTS",
    "TcpCondition",
    "Baseline",
    "Condition",
    "DurationValue",
    "Observed",
    "ParseError",
    "Subject",
    "Value",
    "Verdict",
    "evaluate",
    "failure_message",
    "parse",
    "shown",
]

SubjectKind = Literal["status", "latency", "body", "json", "header", "cert.days_left", "tcp.banner"]
Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "matches"]

HTTP_SUBJECTS: Final = frozenset({"status", "latency", "body", "json", "header", "cert.days_left"})
TCP_SUBJECTS: Final = frozenset({"latency", "tcp.banner"})
_ALL_SUBJECTS = ("status", "latency", "body", "json", "header", "cert.days_left", "tcp.banner")
_SHOWN_SUBJECTS = {
    "status": "status", "latency": "latency", "body": "body", "json": "json.…", "header": "header.…",
    "cert.days_left": "cert.days_left", "tcp.banner": "tcp.banner",
}
_ORDERING: Final = frozenset({"<", "<=", ">", ">="})
_OPS_TEXT = "==, !=, <, <=, >, >=, in, not in, contains, matches"
MAX_NUMBER_DIGITS = 100
SHOWN_LIMIT = 120
"""Characters of a seen value quoted in a failure message at most."""


class ParseError(ValueError):
    """A condition that cannot be read; ``column`` (1-based) points at the trouble."""

    def __init__(self, column: int, reason: str) -> None:
        self.column = column
        self.reason = reason
        super().__init__(f"column {column}: {reason}")


@dataclass(frozen=True, slots=True)
class Subject:
    """What a condition looks at: ``json`` with ``path``, ``header`` with ``path == (name,)``."""

    kind: SubjectKind
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True, slots=True)
class DurationValue:
    """A duration written in a condition (``300ms``), in seconds."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Baseline:
    """``<factor>x baseline``: the check's latency baseline times ``factor``."""

    factor: float


Scalar: TypeAlias = int | float | str | bool | None | DurationValue | Baseline
Value: TypeAlias = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed condition; ``text`` is as written (and as failure messages quote it)."""

    text: str
    subject: Subject
    op: Op
    value: Value
    pattern: re.Pattern[str] | None = field(default=None, compare=False)
    """The compiled regular expression of ``matches``."""

    def __str__(self) -> str:
        return self.text


# --- parsing -----------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_KEY = re.compile(r"""[^\s.\[\]"'=!<>,]+""")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_INDEX = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_UNIT = re.compile(r"[A-Za-z]+")
_STATUS_CLASS = re.compile(r"[1-5]xx", re.IGNORECASE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_NAMED = {"true": True, "false": False, "null": None}


def parse(text: str, subjects: frozenset[str] = frozenset(_ALL_SUBJECTS), *, check_type: str = "") -> Condition:
    """The condition ``text`` says; ``ParseError`` (with a column) if it says nothing sensible.

    ``subjects`` are the subjects the check type offers (``HTTP_SUBJECTS``, ``TCP_SUBJECTS``).
    """
    return _Parser(text, subjects, check_type).condition()


@dataclass(slots=True)
class _Parser:
    text: str
    subjects: frozenset[str]
    check_type: str
    pos: int = 0

    def fail(self, reason: str, at: int | None = None) -> ParseError:
        return ParseError((self.pos if at is None else at) + 1, reason)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def word_here(self) -> str:
        match = _WORD.match(self.text, self.pos)
        return match.group() if match else ""

    def shown_here(self) -> str:
        """The text at the position, as an error quotes it."""
        rest = self.text[self.pos :].split()
        token = rest[0] if rest else ""
        return repr(token[:20] + ("…" if len(token) > 20 else ""))

    def condition(self) -> Condition:
        line_break = re.search(r"[\r\n]", self.text)
        if line_break is not None:
            raise self.fail("a condition is one line", line_break.start())
        self.skip_space()
        if self.at_end():
            raise self.fail("empty condition (expected SUBJECT OP VALUE, like: status == 200)")
        subject = self.subject()
        self.skip_space()
        op_at = self.pos
        op = self.operator()
        self.skip_space()
        value_at = self.pos
        value = self.value()
        self.skip_space()
        if not self.at_end():
            raise self.fail(f"unexpected {self.shown_here()} after the value")
        pattern = self.check(subject, op, op_at, value, value_at)
        return Condition(self.text.strip(), subject, op, value, pattern)

    # -- subject --

    def subject(self) -> Subject:
        start = self.pos
        head = self.word_here()
        if not head:
            raise self.fail(f"expected a subject ({self._subjects_text()}), got {self.shown_here()}")
        self.pos += len(head)
        kind: SubjectKind
        if head in ("status", "latency", "body"):
            kind = head  # type: ignore[assignment]  # narrowed by the membership test
            if self.peek() in (".", "["):
                raise self.fail(f"{head} has no fields")
            self._offered(kind, start)
            return Subject(kind)
        if head == "json":
            self._offered("json", start)
            return Subject("json", self.json_path())
        if head == "header":
            self._offered("header", start)
            if self.peek() != ".":
                raise self.fail("expected .NAME after header (like header.content-type)")
            self.pos += 1
            match = _HEADER_NAME.match(self.text, self.pos)
            if match is None:
                raise self.fail("expected a header name after header.")
            self.pos = match.end()
            return Subject("header", (match.group().lower(),))
        if head in ("cert", "tcp"):
            field_name = "days_left" if head == "cert" else "banner"
            if self.peek() != "." or self.word_at(self.pos + 1) != field_name:
                raise self.fail(f"expected {head}.{field_name}", start)
            self.pos += 1 + len(field_name)
            kind = f"{head}.{field_name}"  # type: ignore[assignment]  # one of the two literals
            self._offered(kind, start)
            return Subject(kind)
        from difflib import get_close_matches  # only when there is a mistake to hint at

        close = get_close_matches(head, ["status", "latency", "body", "json", "header", "cert", "tcp"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {self._subjects_text()})"
        raise self.fail(f"unknown subject {head!r}{hint}", start)

    def word_at(self, pos: int) -> str:
        match = _WORD.match(self.text, pos)
        return match.group() if match else ""

    def _subjects_text(self) -> str:
        return ", ".join(_SHOWN_SUBJECTS[s] for s in _ALL_SUBJECTS if s in self.subjects)

    def _offered(self, kind: str, at: int) -> None:
        if kind not in self.subjects:
            checks = f"{self.check_type} checks" if self.check_type else "this check"
            raise self.fail(f"{_SHOWN_SUBJECTS[kind]} is not available on {checks} ({self._subjects_text()} are)", at)

    def json_path(self) -> tuple[str | int, ...]:
        path: list[str | int] = []
        while self.peek() in (".", "["):
            if self.peek() == ".":
                self.pos += 1
                match = _JSON_KEY.match(self.text, self.pos)
                if match is None:
                    raise self.fail("expected a key after '.' (quote odd keys: json[\"a b\"])")
                path.append(match.group())
                self.pos = match.end()
                continue
            self.pos += 1  # "["
            if self.peek() in ("'", '"'):
                path.append(self.string())
            else:
                match = _INDEX.match(self.text, self.pos)
                if match is None:
                    raise self.fail("expected an index like [0] or a quoted key like [\"a.b\"]")
                digits = match.group()
                if len(digits) > MAX_NUMBER_DIGITS:
                    raise self.fail("number too long")
                path.append(int(digits))
                self.pos = match.end()
            if self.peek() != "]":
                raise self.fail("expected ']'")
            self.pos += 1
        return tuple(path)

    # -- operator --

    def operator(self) -> Op:
        if self.at_end():
            raise self.fail(f"expected an operator ({_OPS_TEXT}) after the subject")
        for symbol in ("==", "!=", "<=", ">=", "<", ">"):
            if self.text.startswith(symbol, self.pos):
                self.pos += len(symbol)
                return symbol
        if self.peek() == "=":
            raise self.fail("use == to compare")
        word = self.word_here()
        if word in ("in", "contains", "matches"):
            self.pos += len(word)
            return word  # type: ignore[return-value]  # one of the Op literals
        if word == "not":
            self.pos += len(word)
            self.skip_space()
            if self.word_here() != "in":
                raise self.fail("expected 'in' after 'not'")
            self.pos += 2
            return "not in"
        raise self.fail(f"expected an operator ({_OPS_TEXT}), got {self.shown_here()}")

    # -- values --

    def value(self) -> Value:
        if self.at_end():
            raise self.fail("expected a value after the operator")
        if self.peek() != "[":
            return self.scalar()
        self.pos += 1
        items: list[Scalar] = []
        self.skip_space()
        if self.peek() == "]":
            raise self.fail("empty list")
        while True:
            self.skip_space()
            if self.at_end():
                raise self.fail("unclosed list (expected ']')")
            if self.peek() == "[":
                raise self.fail("a list holds numbers, strings, true, false or null, not lists")
            items.append(self.scalar())
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() == "]":
                self.pos += 1
                return tuple(items)
            if self.at_end():
                raise self.fail("unclosed list (expected ']')")
            raise self.fail(f"expected ',' or ']', got {self.shown_here()}")

    def scalar(self) -> Scalar:
        char = self.peek()
        if char in ("'", '"'):
            return self.string()
        if _NUMBER.match(self.text, self.pos):
            return self.number()
        word = self.word_here()
        if word in _NAMED:
            self.pos += len(word)
            return _NAMED[word]
        if word:
            raise self.fail(f"expected a value, got {word!r} (quote a string: \"{word}\")")
        raise self.fail(
            "expected a value (a number, a duration like 300ms, a quoted string, a list, true, false or null), "
            f"got {self.shown_here()}"
        )

    def string(self) -> str:
        quote, start = self.peek(), self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.fail("unterminated string", start)
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                escaped = self.text[self.pos + 1 : self.pos + 2]
                if escaped not in _ESCAPES:
                    raise self.fail(f"unknown escape \\{escaped} (use \\\\ for a backslash)")
                out.append(_ESCAPES[escaped])
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1

    def number(self) -> int | float | DurationValue | Baseline:
        start = self.pos
        match = _NUMBER.match(self.text, self.pos)
        assert match is not None  # the caller matched it
        digits = match.group()
        if len(digits) > MAX_NUMBER_DIGITS:
            raise self.fail("number too long", start)
        self.pos = match.end()
        unit_match = _UNIT.match(self.text, self.pos)
        if unit_match is None:
            if any(c in digits for c in ".eE"):
                number = float(digits)
                if not math.isfinite(number):
                    raise self.fail("number too large", start)
                return number
            return int(digits)
        unit = unit_match.group()
        self.pos = unit_match.end()
        if unit == "x":
            self.skip_space()
            if self.word_here() != "baseline":
                raise self.fail("expected 'baseline' after the factor (like 2x baseline)")
            self.pos += len("baseline")
            factor = float(digits)
            if not (math.isfinite(factor) and factor > 0):
                raise self.fail("the factor of baseline must be a number above 0", start)
            return Baseline(factor)
        try:
            seconds = parse_duration(digits + unit)
        except ValueError:
            raise self.fail(
                f"invalid duration {digits + unit!r} (a number and one of ms, s, m, h, d, like 300ms)", start
            ) from None
        return DurationValue(seconds)

    # -- what may go with what --

    def check(self, subject: Subject, op: Op, op_at: int, value: Value, value_at: int) -> re.Pattern[str] | None:
        """Refuse what the grammar allows but no subject means; compile a ``matches`` pattern."""
        kind = subject.kind
        name = _SHOWN_SUBJECTS[kind] if kind in ("json", "header") else kind
        scalars = value if isinstance(value, tuple) else (value,)
        if op in ("in", "not in") and not isinstance(value, tuple):
            raise self.fail(f"{op} needs a list, like [200, 204]", value_at)
        if op not in ("in", "not in", "==", "!=") and isinstance(value, tuple):
            raise self.fail(f"{op} takes one value, not a list", value_at)
        if isinstance(value, tuple) and kind != "json" and op in ("==", "!="):
            raise self.fail(f"{name} is never a list: use in or not in", op_at)
        if kind == "latency":
            if op not in _ORDERING:
                raise self.fail("latency compares with <, <=, > or >=", op_at)
            if not isinstance(value, (DurationValue, Baseline)):
                raise self.fail("latency compares with a duration like 300ms or with Nx baseline", value_at)
            return None
        for item in scalars:
            if isinstance(item, Baseline):
                raise self.fail("only latency compares with a baseline", value_at)
            if isinstance(item, DurationValue):
                raise self.fail("only latency compares with a duration", value_at)
        if op in _ORDERING and not _is_number(value):
            raise self.fail(f"{op} compares with a number", value_at)
        if kind in ("status", "cert.days_left"):
            if op in ("contains", "matches"):
                raise self.fail(f"{kind} is a number: use ==, !=, <, <=, >, >=, in or not in", op_at)
            for item in scalars:
                ok = _is_number(item) or (
                    kind == "status" and isinstance(item, str) and _STATUS_CLASS.fullmatch(item) is not None
                )
                if not ok:
                    wanted = 'a code like 200 or a class like "2xx"' if kind == "status" else "a number"
                    raise self.fail(f"{kind} compares with {wanted}", value_at)
            return None
        if kind in ("body", "tcp.banner") and op in _ORDERING:
            raise self.fail(f"{kind} is text: use ==, !=, in, not in, contains or matches", op_at)
        if kind in ("body", "tcp.banner", "header") and op == "contains" and not isinstance(value, str):
            raise self.fail(f"{name} is text: contains needs a quoted string", value_at)
        if op == "matches":
            if not isinstance(value, str):
                raise self.fail("matches needs a quoted regular expression", value_at)
            try:
                return re.compile(value)
            except (re.error, RecursionError, OverflowError, MemoryError) as exc:
                raise self.fail(f"invalid regular expression: {exc}", value_at) from None
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Missing:
    """A subject with no value in this result, and how a failure message names that."""

    shown: str


_NO_JSON = _Missing("a body that is not JSON")
_NOTHING = _Missing("nothing")


@dataclass(slots=True)
class Observed:
    """What one probe saw; a subject left ``None`` was not seen (a condition on it fails)."""

    status: int | None = None
    latency: float | None = None  # seconds
    body: bytes | None = None
    headers: Mapping[str, str] | None = None  # names lower-case
    cert_days_left: float | None = None
    banner: bytes | None = None
    baseline: float | None = None  # seconds; None until the check has enough samples
    _text: str | None = field(default=None, repr=False)
    _json: Any = field(default=None, repr=False)
    _json_parsed: bool = field(default=False, repr=False)

    def body_text(self) -> str | None:
        if self._text is None and self.body is not None:
            self._text = self.body.decode("utf-8", "replace")
        return self._text

    def json(self) -> Any:
        """The body as JSON, parsed at most once; ``_NO_JSON`` when it is not JSON."""
        if not self._json_parsed:
            self._json_parsed = True
            self._json = _NO_JSON
            if self.body is not None:
                try:
                    self._json = json.loads(self.body)
                except (ValueError, RecursionError):
                    pass
        return self._json


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a condition held, and what was seen as a failure message quotes it."""

    ok: bool
    seen: str
    value: Any = None


def failure_message(condition: Condition, verdict: Verdict) -> str:
    """``condition failed: json.status == "UP" (got "DOWN")``."""
    return f"condition failed: {condition.text} (got {verdict.seen})"


def evaluate(condition: Condition, observed: Observed) -> Verdict:
    """Whether ``condition`` holds for what was ``observed``."""
    subject = condition.subject
    found = _value_of(subject, observed)
    if isinstance(found, _Missing):
        return Verdict(False, found.shown)
    value = condition.value
    if isinstance(value, Baseline):
        baseline = observed.baseline
        if baseline is None:  # not enough samples yet: a baseline condition never fires
            return Verdict(True, f"{shown(subject, found)}, no baseline yet", found)
        limit = value.factor * baseline
        ok = _ordered(condition.op, found, limit)
        return Verdict(ok, f"{shown(subject, found)}, baseline {_shown_seconds(baseline)}", found)
    ok = _holds(condition, found, value, observed)
    return Verdict(ok, shown(subject, found), found)


def _value_of(subject: Subject, observed: Observed) -> Any:
    kind = subject.kind
    found: Any
    if kind == "status":
        found = observed.status
    elif kind == "latency":
        found = observed.latency
    elif kind == "body":
        found = observed.body
    elif kind == "tcp.banner":
        found = observed.banner
    elif kind == "cert.days_left":
        if observed.cert_days_left is None:
            return _Missing("no certificate")
        found = observed.cert_days_left
    elif kind == "header":
        if observed.headers is None:
            return _NOTHING
        header = observed.headers.get(str(subject.path[0]))
        return _Missing("no such header") if header is None else header
    else:
        return _walk(observed.json(), subject.path)
    return _NOTHING if found is None else found


def _walk(document: Any, path: tuple[str | int, ...]) -> Any:
    current = document
    if current is _NO_JSON:
        return _NO_JSON
    for step in path:
        if isinstance(step, int) and isinstance(current, list) and step < len(current):
            current = current[step]
        elif isinstance(current, dict) and str(step) in current:
            current = current[str(step)]
        else:
            return _NOTHING
    return current


def _holds(condition: Condition, found: Any, value: Value, observed: Observed) -> bool:
    op = condition.op
    kind = condition.subject.kind
    if isinstance(found, bytes):  # body, banner: compared as text, searched as bytes
        if op == "contains" and isinstance(value, str):
            return value.encode("utf-8") in found
        text = observed.body_text() if kind == "body" else found.decode("utf-8", "replace")
        found = text
    loose = kind == "header"  # a header is text, and "42" compares with 42
    if op == "==":
        return _equal(found, value, kind, loose)
    if op == "!=":
        return not _equal(found, value, kind, loose)
    if op in ("in", "not in"):
        assert isinstance(value, tuple)
        inside = any(_equal(found, item, kind, loose) for item in value)
        return inside if op == "in" else not inside
    if op == "contains":
        if isinstance(found, str):
            return isinstance(value, str) and value in found
        if isinstance(found, list):
            return any(_equal(item, value, kind, False) for item in found)
        if isinstance(found, dict):
            return isinstance(value, str) and value in found
        return False
    if op == "matches":
        pattern = condition.pattern
        return pattern is not None and isinstance(found, str) and pattern.search(found) is not None
    limit = value.seconds if isinstance(value, DurationValue) else value
    return _ordered(op, _number(found, loose), limit)


def _ordered(op: str, found: Any, limit: Any) -> bool:
    if not (_is_number(found) and _is_number(limit)):
        return False
    if op == "<":
        return bool(found < limit)
    if op == "<=":
        return bool(found <= limit)
    if op == ">":
        return bool(found > limit)
    return bool(found >= limit)


def _number(found: Any, loose: bool) -> Any:
    if loose and isinstance(found, str):
        try:
            number = float(found.strip())
        except ValueError:
            return found
        return number if math.isfinite(number) else found
    return found


def _equal(found: Any, value: Any, kind: str, loose: bool) -> bool:
    """JSON's idea of equal: ``1 == 1.0``, but ``true`` is not ``1`` and ``"1"`` is not ``1``."""
    if kind == "status" and isinstance(value, str):  # a class: "2xx"
        return _is_number(found) and found // 100 == int(value[0])
    if isinstance(found, bool) or isinstance(value, bool) or found is None or value is None:
        return type(found) is type(value) and found == value
    if _is_number(value):
        found = _number(found, loose)
        return _is_number(found) and bool(found == value)
    if isinstance(value, str):
        return isinstance(found, str) and found == value
    if isinstance(value, tuple):
        return (
            isinstance(found, list)
            and len(found) == len(value)
            and all(_equal(a, b, kind, False) for a, b in zip(found, value, strict=True))
        )
    return False


def shown(subject: Subject, found: Any) -> str:
    """A seen value as a failure message quotes it: short, and never a secret."""
    if subject.kind == "latency" and _is_number(found):
        return _shown_seconds(float(found))
    if subject.kind == "cert.days_left" and _is_number(found):
        return f"{found:.1f}"
    if subject.kind == "header" and is_secret_name(str(subject.path[0])):
        return REDACTED
    if subject.kind == "json" and any(isinstance(step, str) and is_secret_name(step) for step in subject.path):
        return REDACTED
    if isinstance(found, bytes):
        found = found[: SHOWN_LIMIT * 4].decode("utf-8", "replace")
    if isinstance(found, str):
        text = found if len(found) <= SHOWN_LIMIT else found[:SHOWN_LIMIT] + "…"
        return json.dumps(redact_text(text), ensure_ascii=False)
    try:
        text = json.dumps(found, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError, RecursionError):
        text = repr(found)
    if len(text) > SHOWN_LIMIT:
        text = text[:SHOWN_LIMIT] + "…"
    return redact_text(text) if isinstance(found, (list, dict)) else text


def _shown_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.2f}s" if seconds < 60 else format_duration(round(seconds))


# --- config ------------------------------------------------------------------------------------


def _item_parser(subjects: frozenset[str], check_type: str) -> Callable[[object], Condition]:
    def parse_item(value: object) -> Condition:
        if isinstance(value, Condition):
            return value
        if not isinstance(value, str):
            raise ValueError("expected a string (quote a condition that YAML reads otherwise)")
        return parse(value, subjects, check_type=check_type)

    return parse_item


# An item of a check's ``conditions:`` list: a string parsed at load time, reported at its item
# with its column (``checks[0].conditions[1]: column 13: …``), dumped back as its text.
HttpCondition = Annotated[Condition, Before(_item_parser(HTTP_SUBJECTS, "http"))]
TcpCondition = Annotated[Condition, Before(_item_parser(TCP_SUBJECTS, "tcp"))]
