"""Postmortem drafts: Markdown rendered from an incident, its timeline and its evidence bundle.

A draft is what the people who ran an incident start their postmortem from: the facts the agent
recorded (start, end, downtime, impact, the timeline with heal attempts and status updates, the
highlights of the evidence) with the human parts left as prompts (root cause and solution when
given, "5 Whys", action items from ``follow_ups``, lessons learned). ``draft_context`` is the pure
part: the incident as the API shows it (internal comments included: a postmortem is internal) and
its evidence (already redacted when stored) in, the template's variables out. The template is
Jinja2 (``agent/templates/postmortem.md.j2``, or ``agent.postmortem_template``), checked when
the config loads: it must exist, parse and render a sample incident; Jinja2 is imported only here.

``PostmortemWriter`` writes the draft of an incident that requires one when it resolves, off the
event loop and atomically (a temporary file renamed into ``agent.postmortem_dir/<id>.md``); a
draft already on disk is never overwritten (someone may be editing it). The engine records the
path on the incident; until then the incident says ``path: null``, so an agent killed between the
resolve and the write writes it at its next start (``catch_up``). A failure is logged and never
touches the resolve itself.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.timefmt import iso

if TYPE_CHECKING:  # pragma: no cover
    from jinja2 import Template

    from agent.config import Config
    from agent.store import Store

log = structlog.get_logger("lifeguard.postmortem")

TEMPLATE = Path(__file__).parent / "templates" / "postmortem.md.j2"
LOG_LINES = 10  # the container's last log lines a draft quotes
PRESSURE = 90.0  # percent of CPU, memory or a disk from which the host counts as under pressure
EVIDENCE_WAIT = 5.0  # seconds a draft waits for the resolved evidence of this process's collection

__all__ = [
    "TEMPLATE",
    "PostmortemWriter",
    "TemplateProblem",
    "draft_context",
    "draft_name",
    "load_template",
    "render",
    "write_draft",
]


class TemplateProblem(Exception):
    """The template cannot be used: ``str()`` names the file, the line when known, and the problem."""


# --- the pure part ------------------------------------------------------------------------------


def _ts(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def human_duration(seconds: float | None) -> str | None:
    """``1h 4m``, ``12m 3s``, ``45s``: the two largest units, for people."""
    if seconds is None:
        return None
    s = max(0, int(round(seconds)))
    parts = [(s // 86400, "d"), (s // 3600 % 24, "h"), (s // 60 % 60, "m"), (s % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts[:2])


def draft_context(
    incident: Mapping[str, Any],
    evidence: Mapping[str, Any] | None,
    *,
    generated_at: float,
    service: str | None = None,
) -> dict[str, Any]:
    """Everything a postmortem template may use, from the incident (API form) and its evidence."""
    opened = _ts(incident.get("opened_at"))
    resolved = _ts(incident.get("resolved_at"))
    downtime_s = None if opened is None else (resolved if resolved is not None else generated_at) - opened
    services = list(dict.fromkeys([*(incident.get("affected_services") or []), *([service] if service else [])]))
    timeline = [dict(t) for t in incident.get("timeline") or []]
    bundles = evidence or {}
    return {
        "id": incident["id"],
        "title": incident["title"],
        "severity": incident["severity"],
        "sev": incident.get("sev") or incident["severity"],
        "status": incident["status"],
        "manual": bool(incident.get("manual")),
        "date": (incident.get("opened_at") or "")[:10],
        "started": incident.get("opened_at"),
        "ended": incident.get("resolved_at"),
        "downtime": human_duration(downtime_s),
        "downtime_s": None if downtime_s is None else round(downtime_s, 3),
        "ongoing": resolved is None,
        "resolve_reason": incident.get("resolve_reason"),
        "resolved_by": incident.get("resolved_by"),
        "acknowledged_at": incident.get("acknowledged_at"),
        "acknowledged_by": incident.get("acknowledged_by"),
        "assignee": incident.get("assignee"),
        "description": incident.get("description"),
        "impact": {
            "checks": [incident["check"]] if incident.get("check") else [],
            "target": incident.get("target") or None,
            "containers": [incident["container"]] if incident.get("container") else [],
            "services": services,
            "tags": list(incident.get("tags") or []),
        },
        "timeline": timeline,
        "heals": [t for t in timeline if str(t.get("kind", "")).startswith("heal_")],
        "updates": list(incident.get("updates") or []),
        "comments": list(incident.get("comments") or []),
        "evidence": evidence_highlights(bundles.get("opened"), bundles.get("resolved")),
        "root_cause": incident.get("root_cause"),
        "solution": incident.get("solution"),
        "follow_ups": list(incident.get("follow_ups") or []),
        "generated_at": iso(generated_at),
    }


def evidence_highlights(opened: Mapping[str, Any] | None, resolved: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a reader of the postmortem wants from the bundles: the failing response's status, the
    last failing message, the container's exit code, OOMKilled and last log lines, host pressure."""
    bundle: Mapping[str, Any] = opened or resolved or {}
    response = _mapping(bundle.get("response"))
    checks: list[Any] = _list(bundle.get("checks"))
    failing = [c for c in checks if isinstance(c, Mapping) and not c.get("ok")]
    container = _mapping(bundle.get("container"))
    state: Mapping[str, Any] = _mapping(container.get("state")) or {} if container else {}
    logs: list[Any] = _list(container.get("logs")) if container else []
    host = _mapping(bundle.get("host"))
    return {
        "collected": bool(opened or resolved),
        "collected_at": bundle.get("collected_at"),
        "response": None if response is None else {"status": response.get("status"), "url": response.get("url")},
        "failing_message": failing[-1].get("message") if failing else None,
        "failing_results": len(failing),
        "container": None if container is None else {
            "name": container.get("name"),
            "image": container.get("image"),
            "error": container.get("error"),
            "status": state.get("status"),
            "exit_code": state.get("exit_code"),
            "oom_killed": bool(state.get("oom_killed")),
            "restart_count": state.get("restart_count"),
        },
        "logs": [str(line) for line in logs[-LOG_LINES:]],
        "host": None if host is None else _host(host),
    }


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _host(host: Mapping[str, Any]) -> dict[str, Any]:
    if host.get("error"):
        return {"error": host.get("error"), "cpu_percent": None, "memory_percent": None, "load_avg": None,
                "disks": [], "pressure": []}
    memory: Mapping[str, Any] = _mapping(host.get("memory")) or {}
    disks = [d for d in _list(host.get("disk")) if isinstance(d, Mapping) and d.get("percent") is not None]
    pressure = []
    cpu = host.get("cpu_percent")
    if isinstance(cpu, (int, float)) and cpu >= PRESSURE:
        pressure.append(f"CPU {cpu:.0f}%")
    mem = memory.get("percent")
    if isinstance(mem, (int, float)) and mem >= PRESSURE:
        pressure.append(f"memory {mem:.0f}%")
    pressure += [f"disk {d['path']} {d['percent']:.0f}%" for d in disks if d["percent"] >= PRESSURE]
    return {
        "error": None,
        "cpu_percent": cpu,
        "memory_percent": mem,
        "load_avg": host.get("load_avg"),
        "disks": [{"path": d.get("path"), "percent": d.get("percent")} for d in disks],
        "pressure": pressure,
    }


def draft_name(incident_id: str) -> str:
    """The draft's file name in ``postmortem_dir``."""
    if not re.fullmatch(r"inc_[0-9a-f]+", incident_id):  # never a path of its own
        raise ValueError(f"not an incident id: {incident_id!r}")
    return f"{incident_id}.md"


# --- the template -------------------------------------------------------------------------------

_SAMPLE_INCIDENT: dict[str, Any] = {
    "id": "inc_0123456789abcdef", "title": "web failing: HTTP 503", "severity": "critical", "sev": "SEV-1",
    "status": "resolved", "check": "web", "check_type": "http", "target": "http://127.0.0.1/health",
    "container": "web", "opened_at": "2026-11-18T11:06:40.000Z", "resolved_at": "2026-11-18T11:40:00.000Z",
    "resolve_reason": "recovered", "resolved_by": None, "acknowledged_at": "2026-11-18T11:08:00.000Z",
    "acknowledged_by": "ann", "assignee": "ann", "description": "The shop answered 503.", "manual": False,
    "affected_services": ["shop"], "tags": ["shop"], "root_cause": "A full disk.", "solution": "Rotated logs.",
    "follow_ups": ["Alert on disk usage"],
    "timeline": [
        {"at": "2026-11-18T11:06:40.000Z", "kind": "opened", "message": "HTTP 503", "author": None},
        {"at": "2026-11-18T11:06:41.000Z", "kind": "heal_attempted", "message": "restarting container 'web'",
         "author": None},
    ],
    "updates": [{"at": "2026-11-18T11:10:00.000Z", "author": "ann", "phase": "identified", "message": "Disk full"}],
    "comments": [{"at": "2026-11-18T11:09:00.000Z", "author": "bob", "text": "on it", "internal": True}],
}
_SAMPLE_EVIDENCE: dict[str, Any] = {
    "opened": {
        "phase": "opened", "collected_at": "2026-11-18T11:06:41.000Z",
        "checks": [{"at": "2026-11-18T11:06:40.000Z", "ok": False, "latency_ms": 3.0, "message": "HTTP 503"}],
        "response": {"url": "http://127.0.0.1/health", "status": 503, "headers": {}, "body": "",
                     "body_truncated": False},
        "container": {"name": "web", "id": "0123456789ab", "image": "web:1", "logs": ["disk full"],
                      "state": {"status": "running", "exit_code": 0, "oom_killed": False, "restart_count": 1}},
        "host": {"cpu_percent": 12.0, "load_avg": [0.1, 0.2, 0.3], "memory": {"percent": 95.0},
                 "disk": [{"path": "/", "percent": 99.0}]},
    },
    "resolved": None,
}


def _md_cell(value: Any) -> str:
    """A value made safe for one cell of a Markdown table: one line, no column breaks."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def _environment(folder: Path, strict: bool) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined if strict else jinja2.ChainableUndefined,
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md_cell"] = _md_cell
    return env


def load_template(path: Path | None = None) -> Template:
    """The template at ``path`` (the shipped one when None), proved to parse and to render a sample
    incident with every variable a template may use; ``TemplateProblem`` says where it does not."""
    import jinja2

    path = TEMPLATE if path is None else Path(path)
    if not path.is_file():
        raise TemplateProblem(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        strict = _environment(path.parent, strict=True).get_template(path.name)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or str(path)
        raise TemplateProblem(f"{where}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateProblem(f"{path}: cannot find {exc.name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateProblem(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    sample = draft_context(_SAMPLE_INCIDENT, _SAMPLE_EVIDENCE, generated_at=1_795_000_000.0, service="shop")
    render(strict, sample, path)  # raises TemplateProblem at the line that failed
    template: Template = _environment(path.parent, strict=False).get_template(path.name)
    return template


def render(template: Template, context: Mapping[str, Any], path: Path | None = None) -> str:
    """The draft's text; ``TemplateProblem`` naming the template's line when rendering fails."""
    try:
        return template.render(**context)
    except Exception as exc:
        filename = template.filename or (str(path) if path else "template")
        line = _template_line(exc, filename)
        problem = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise TemplateProblem(f"{filename}{f':{line}' if line else ''}: {problem}") from None


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template's line in the traceback Jinja2 rewrote to point into it."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# --- writing ------------------------------------------------------------------------------------


def write_draft(folder: Path, incident_id: str, text: str) -> tuple[Path, bool]:
    """Write the draft atomically (temporary file, then rename) unless one is already there.
    Returns its path and whether it was written now. Blocking: call it off the event loop."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / draft_name(incident_id)
    if path.exists():
        return path, False
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return path, True
    try:
        os.fsync(dir_fd)  # the rename survives a power cut
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path, True


def render_draft(
    template_path: Path | None,
    incident: Mapping[str, Any],
    evidence: Mapping[str, Any] | None,
    *,
    generated_at: float,
    service: str | None = None,
) -> str:
    """Load the template and render one incident's draft (blocking: it reads the template file)."""
    template = load_template(template_path)
    context = draft_context(incident, evidence, generated_at=generated_at, service=service)
    return render(template, context, template_path)


def service_for(config: Config, check: str | None) -> str | None:
    """The service the incident's check belongs to (its ``group``, else its first tag), if configured."""
    if not check:
        return None
    for c in config.checks:
        if c.name == check:
            return c.group or (c.tags[0] if c.tags else None)
    return None


class PostmortemWriter:
    """Writes the draft of each incident that requires one once it is resolved.

    ``record`` stores the draft's path on the incident (the engine's command); ``config`` is read
    at each write, so a reload's ``postmortem_dir`` and template apply to the next draft.
    """

    def __init__(
        self,
        store: Store,
        record: Callable[[str, str], Awaitable[Any]],
        config: Callable[[], Config],
        *,
        evidence_ready: Callable[[str, str], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.store = store
        self.record = record
        self.config = config
        self.evidence_ready = evidence_ready
        self.clock = clock or time.time
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writing: set[str] = set()

    def resolved(self, incident_id: str) -> None:
        """An incident was resolved (the engine calls this after the resolve committed)."""
        if incident_id in self._writing:
            return
        task = asyncio.create_task(self.write(incident_id), name=f"postmortem:{incident_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def catch_up(self) -> None:
        """Write the drafts that are required and missing (an agent stopped before it wrote them)."""
        for incident_id in await self.store.run(self.store.incidents.postmortems_missing):
            self.resolved(incident_id)

    async def write(self, incident_id: str) -> Path | None:
        """Write one draft if the incident requires one and has none; never raises."""
        if incident_id in self._writing:
            return None
        self._writing.add(incident_id)
        try:
            return await self._write(incident_id)
        except Exception as exc:  # the incident is resolved either way; the next start tries again
            log.error("postmortem.failed", incident_id=incident_id, error=str(exc))
            return None
        finally:
            self._writing.discard(incident_id)

    async def _write(self, incident_id: str) -> Path | None:
        if self.evidence_ready is not None:
            try:
                await asyncio.wait_for(self.evidence_ready(incident_id, "resolved"), EVIDENCE_WAIT)
            except TimeoutError:
                log.warning("evidence.late", incident_id=incident_id, phase="resolved", before="postmortem")
        incident = await self.store.run(self.store.incidents.get, incident_id)
        if incident is None or incident["status"] != "resolved":
            return None
        facts = incident.get("postmortem") or {}
        if not facts.get("required") or facts.get("path"):
            return None
        evidence = await self.store.run(self.store.evidence.get, incident_id)
        config = self.config()
        text = await asyncio.to_thread(
            render_draft,
            config.agent.postmortem_template,
            incident,
            evidence,
            generated_at=self.clock(),
            service=service_for(config, incident.get("check")),
        )
        path, written = await asyncio.to_thread(write_draft, config.agent.postmortem_dir, incident_id, text)
        await self.record(incident_id, str(path))
        log.info("postmortem.written", incident_id=incident_id, path=str(path), kept_existing=not written)
        return path

    async def drain(self, grace: float) -> None:
        """Let drafts under way finish (bounded); the rest are written at the next start."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

