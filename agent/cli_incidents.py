"""``lifeguard incidents``: run the running agent's incidents from a shell, through its API.

Each command is one API call with the config's ``agent.api`` address and token (``agent.cli_ops``
does the calling and says why when no agent answers): a table or a few lines for people, the
API's JSON with ``--json`` for scripts. The author defaults to ``$USER@host``.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from typing import TYPE_CHECKING, Any

from agent.cli_ops import EXIT_FAILED, EXIT_OK, _call

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import Config


def default_author() -> str:
    """``$USER@host``: who a command is recorded as when ``--by`` is not given."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no $USER and no passwd entry (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def listing(config: Config, status: str | None, limit: int | None, as_json: bool) -> int:
    query = {k: str(v) for k, v in (("status", status), ("limit", limit)) if v is not None}
    answer = _call(config, "GET", "/api/incidents", query)
    if answer is None:
        return EXIT_FAILED
    if as_json:
        return _print_json(answer)
    rows = answer["incidents"]
    table = [("ID", "STATUS", "SEV", "PHASE", "OPENED", "TITLE")]
    table += [(i["id"], i["status"], i["sev"], i.get("phase") or "", i["opened_at"], i["title"]) for i in rows]
    widths = [max(len(row[n]) for row in table) for n in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
    print(f"\n{len(rows)} incident{'s' * (len(rows) != 1)}")
    return EXIT_OK


def silences(config: Config, as_json: bool) -> int:
    answer = _call(config, "GET", "/api/silences", {})
    if answer is None:
        return EXIT_FAILED
    if as_json:
        return _print_json(answer)
    table = [("ID", "STATUS", "ENDS", "BY", "MATCH", "COMMENT")]
    for s in answer if isinstance(answer, list) else answer.get("silences", []):
        match = "; ".join(f"{k}={','.join(v)}" for k, v in s["match"].items() if v) or "everything"
        table.append((s["id"], s["status"], s["ends_at"], s["created_by"], match, s.get("comment") or ""))
    widths = [max(len(row[n]) for row in table) for n in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
    return EXIT_OK


def show(config: Config, incident_id: str, as_json: bool) -> int:
    answer = _call(config, "GET", f"/api/incidents/{incident_id}", {})
    if answer is None:
        return EXIT_FAILED
    if as_json:
        return _print_json(answer)
    print("\n".join(incident_lines(answer)))
    return EXIT_OK


def incident_lines(i: dict[str, Any]) -> list[str]:
    """An incident for people: its facts, then its updates, comments and timeline."""
    lines = [f"{i['id']}  [{i['sev']}] {i['title']}"]
    resolved = i["resolved_at"] and i["resolved_at"] + (f" by {i['resolved_by']}" if i.get("resolved_by") else "")
    facts = [
        ("status", i["status"] + (f" by {i['acknowledged_by']}" if i.get("acknowledged_by") else "")),
        ("phase", i.get("phase")),
        ("check", i["check"] or None),
        ("assignee", i.get("assignee")),
        ("services", ", ".join(i.get("affected_services") or []) or None),
        ("tags", ", ".join(i.get("tags") or []) or None),
        ("opened", i["opened_at"]),
        ("resolved", resolved),
        ("root cause", i.get("root_cause")),
        ("solution", i.get("solution")),
        ("flapping", "yes" if i.get("flapping") else None),
        ("held by", i.get("suppressed_by")),
        ("postmortem", _postmortem(i.get("postmortem"))),
    ]
    lines += [f"  {name + ':':<12}{value}" for name, value in facts if value]
    lines += [f"  follow-up:  {item}" for item in i.get("follow_ups") or []]
    if i.get("description"):
        lines += ["", f"  {i['description']}"]
    if i.get("updates"):
        lines += ["", "Updates:"] + [f"  {u['at']}  {u['phase']}: {u['message']} ({u['author']})" for u in i["updates"]]
    if i.get("comments"):
        lines += ["", "Comments:"] + [
            f"  {c['at']}  {c['author']}{' (internal)' if c['internal'] else ''}: {c['text']}" for c in i["comments"]
        ]
    lines += ["", "Timeline:"] + [f"  {t['at']}  {t['kind']}: {t['message']}" for t in i.get("timeline", [])]
    return lines


def _postmortem(found: dict[str, Any] | None) -> str | None:
    if not found or not found.get("required"):
        return None
    return found.get("path") or "required, no draft yet"


def command(config: Config, method: str, path: str, body: dict[str, Any], as_json: bool, said: str) -> int:
    """One write: the incident as it now is (``--json``) or one line saying what was done."""
    answer = _call(config, method, path, {}, {k: v for k, v in body.items() if v is not None})
    if answer is None:
        return EXIT_FAILED
    if as_json:
        return _print_json(answer)
    print(said.format(**answer))
    return EXIT_OK


def _print_json(answer: Any) -> int:
    json.dump(answer, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return EXIT_OK
