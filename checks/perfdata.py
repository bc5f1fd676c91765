"""The output of a Nagios-style plugin: its first line (the message) and its performance data.

Pure functions, so the format's corners are tested without running anything. The format, from
the plugin guidelines::

    TEXT OUTPUT | 'label'=value[UOM];[warn];[crit];[min];[max] 'other label'=...
    LONG TEXT LINE 1
    LONG TEXT LINE 2 | MORE PERFDATA
    MORE PERFDATA ON ITS OWN LINE

The message is the first line up to ``|``. Performance data follows the ``|`` of the first line,
and the ``|`` of the first later line that has one, together with every line after that. Labels
with spaces are quoted with ``'`` (a quote inside is written ``''``); ``warn`` and ``crit`` are
ranges (``10``, ``10:20``, ``@10:20``, ``~:5``) and kept as written; a value of ``U`` means the
plugin could not tell. An entry that does not parse is skipped: a plugin's sloppy figures never
turn a result into an error.
"""

from __future__ import annotations

import re
from typing import Any

MAX_ENTRIES = 100
"""Perfdata entries kept from one run."""
MAX_LABEL = 200
"""Characters of a label kept."""
MAX_RANGE = 64
"""Characters of a ``warn`` or ``crit`` range kept."""

_VALUE = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|U)(.*)", re.DOTALL)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def split_output(output: str) -> tuple[str, str]:
    """``(message, perfdata text)`` of a plugin's whole output."""
    lines = output.splitlines()
    if not lines:
        return "", ""
    message, _, perf = lines[0].partition("|")
    parts = [perf]
    for i, line in enumerate(lines[1:], start=1):
        if "|" in line:
            parts.append(line.partition("|")[2])
            parts.extend(lines[i + 1 :])
            break
    return message.strip(), " ".join(p.strip() for p in parts if p.strip())


def parse_perfdata(text: str) -> list[dict[str, Any]]:
    """Entries ``{label, value, uom, warn, crit, min, max}`` of a perfdata text, in order.

    ``value`` is a number or None (``U``); ``uom`` the unit as written (``""`` when none);
    ``warn``/``crit`` range strings or None; ``min``/``max`` numbers or None.
    """
    entries: list[dict[str, Any]] = []
    pos, end = 0, len(text)
    while pos < end and len(entries) < MAX_ENTRIES:
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            break
        label, pos = _label(text, pos)
        rest_end = pos
        while rest_end < end and not text[rest_end].isspace():
            rest_end += 1
        figures, pos = text[pos:rest_end], rest_end
        if label is None or not figures.startswith("="):
            continue
        entry = _entry(label, figures[1:])
        if entry is not None:
            entries.append(entry)
    return entries


def _label(text: str, pos: int) -> tuple[str | None, int]:
    """The label starting at ``pos`` and where its ``=`` is; None when there is no label."""
    end = len(text)
    if text[pos] == "'":
        out: list[str] = []
        i = pos + 1
        while i < end:
            if text[i] == "'":
                if i + 1 < end and text[i + 1] == "'":  # '' is a quote inside the label
                    out.append("'")
                    i += 2
                    continue
                return ("".join(out)[:MAX_LABEL] or None), i + 1
            out.append(text[i])
            i += 1
        return None, end  # an unclosed quote: nothing more can be read
    i = pos
    while i < end and text[i] != "=" and not text[i].isspace():
        i += 1
    return (text[pos:i][:MAX_LABEL] or None), i


def _entry(label: str, figures: str) -> dict[str, Any] | None:
    fields = figures.split(";")
    match = _VALUE.fullmatch(fields[0])
    if match is None:
        return None
    value_text, uom = match.groups()
    if uom and not re.fullmatch(r"[A-Za-z%/_]{1,16}", uom):
        return None
    value = None if value_text == "U" else _float(value_text)

    def field(i: int) -> str | None:
        return fields[i].strip()[:MAX_RANGE] or None if len(fields) > i else None

    return {
        "label": label,
        "value": value,
        "uom": uom,
        "warn": field(1),
        "crit": field(2),
        "min": _number_or_none(field(3)),
        "max": _number_or_none(field(4)),
    }


def _float(text: str) -> float | None:
    number = float(text)
    return number if number == number and abs(number) != float("inf") else None


def _number_or_none(text: str | None) -> float | None:
    if text is None or not _NUMBER.fullmatch(text):
        return None
    return _float(text)
