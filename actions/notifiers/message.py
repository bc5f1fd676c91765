"""One message, every channel: what a person should read about an event, built once, purely.

``build_message`` turns a ``Notification`` into a ``Message``: the first line
(``[SEV-1][OPENED] api failing: HTTP 500``), the facts (check, target, container, agent, how long,
the heal), the last error, the container's exit state, its last log lines and the evidence link.
Chat and paging channels only lay it out in their own markup, escaping every string from outside.
Everything here comes from the stored event, which is already redacted. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.events import Notification

LOG_LINES = 5
"""Container log lines a message shows, the last ones."""

EVENT_LABELS = {
    "incident.opened": "OPENED",
    "incident.heal_attempted": "HEAL ATTEMPTED",
    "incident.heal_succeeded": "HEALED",
    "incident.heal_failed": "HEAL FAILED",
    "incident.escalated": "ESCALATED",
    "incident.resolved": "RESOLVED",
    "incident.acknowledged": "ACKNOWLEDGED",
    "incident.updated": "UPDATED",
    "incident.commented": "COMMENTED",
    "incident.reminder": "REMINDER",
    "notifier.test": "TEST",
}

_HEAL_RESULTS = {
    "attempted": "verifying",
    "succeeded": "recovered",
    "failed": "failed",
    "exhausted": "budget spent",
    "dry_run": "dry run",
}


@dataclass(frozen=True, slots=True)
class Message:
    """What every channel shows of one event, before its own markup."""

    first_line: str  # the one line every channel shows first (and the fallback text)
    label: str  # OPENED, RESOLVED, …
    severity: str  # critical | high | medium | low
    sev: str  # SEV-1 … SEV-4
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)  # (label, value), in reading order
    last_error: str | None = None
    container_state: str | None = None  # "exited, exit code 137, OOM-killed"
    log_lines: list[str] = field(default_factory=list)
    evidence_url: str | None = None  # a link worth showing (public_url set), else None
    test: bool = False

    def text(self) -> str:
        """The whole message as plain text: the first line, then one fact per line."""
        lines = [self.first_line, ""]
        lines += [f"{name}: {value}" for name, value in self.facts]
        if self.last_error:
            lines.append(f"Last error: {self.last_error}")
        if self.container_state:
            lines.append(f"Container state: {self.container_state}")
        if self.log_lines:
            lines += ["", "Last log lines:", *self.log_lines]
        if self.evidence_url:
            lines += ["", f"Evidence: {self.evidence_url}"]
        return "\n".join(lines)


def build_message(notification: Notification) -> Message:
    event = notification.event
    incident = event.incident
    evidence = notification.evidence or {}
    label = EVENT_LABELS.get(event.kind, event.kind.rpartition(".")[2].upper().replace("_", " "))
    sev = str(incident.get("sev") or "SEV-?")
    title = str(incident.get("title") or incident.get("check") or "incident")
    check = str(incident.get("check") or "")
    lasted = _lasted(incident, event.occurred_at)
    test = event.kind == "notifier.test"
    if event.kind == "incident.resolved":
        headline = f"{check} recovered after {lasted}" if lasted else f"{check} recovered"
    else:
        headline = title
    first_line = f"[TEST][{sev}] {headline}" if test else f"[{sev}][{label}] {headline}"

    facts = [("Check", check)] if check else []
    for name, key in (("Target", "target"), ("Container", "container")):
        if incident.get(key):
            facts.append((name, str(incident[key])))
    facts.append(("Agent", str(event.agent.get("name", ""))))
    facts.append(("Severity", f"{sev} ({incident.get('severity', '')})"))
    if lasted:
        facts.append(("Resolved after" if event.kind == "incident.resolved" else "Lasting", lasted))
    heal = _heal(incident.get("heal"))
    if heal:
        facts.append(("Heal", heal))
    container = evidence.get("container") if isinstance(evidence.get("container"), dict) else None
    return Message(
        first_line=first_line,
        label=label,
        severity=str(incident.get("severity") or ""),
        sev=sev,
        title=title,
        facts=facts,
        last_error=_last_error(incident, evidence),
        container_state=_container_state(container),
        log_lines=[str(line) for line in (container or {}).get("logs", [])[-LOG_LINES:]],
        evidence_url=notification.evidence_url if notification.evidence_public else None,
        test=test,
    )


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_json(document: Any) -> bytes:
    """A request body: compact JSON, UTF-8, not escaped (what the chat and paging services take)."""
    import json

    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def format_elapsed(seconds: float) -> str:
    """``3m12s``, ``45s``, ``1h2m``, ``2d3h``: two units at most, the larger first."""
    total = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            parts.append(f"{total // size}{unit}")
            total %= size
        if len(parts) == 2:
            break
    return "".join(parts)


def _lasted(incident: dict[str, Any], at: float) -> str | None:
    opened = _epoch(incident.get("opened_at"))
    if opened is None:
        return None
    end = _epoch(incident.get("resolved_at")) or at
    return format_elapsed(end - opened)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _heal(heal: Any) -> str | None:
    if not isinstance(heal, dict):
        return None
    done = f"restarted {heal.get('restarts', 0)}/{heal.get('max_restarts', '?')}"
    result = _HEAL_RESULTS.get(str(heal.get("last_result")))
    return f"{done}, {result}" if result else done


def _last_error(incident: dict[str, Any], evidence: dict[str, Any]) -> str | None:
    for check in reversed(evidence.get("checks") or []):
        if isinstance(check, dict) and check.get("ok") is False and check.get("message"):
            return str(check["message"])
    for entry in incident.get("timeline") or []:
        if isinstance(entry, dict) and entry.get("kind") == "opened":
            return str(entry.get("message") or "") or None
    return None


def _container_state(container: dict[str, Any] | None) -> str | None:
    if not container or not isinstance(container.get("state"), dict):
        return None
    state = container["state"]
    status = state.get("status")
    if status == "running" and not state.get("oom_killed"):
        return None
    parts = [str(status or "unknown")]
    if state.get("exit_code") not in (None, 0) or status in ("exited", "dead"):
        parts.append(f"exit code {state.get('exit_code')}")
    if state.get("oom_killed"):
        parts.append("OOM-killed")
    return ", ".join(parts)
