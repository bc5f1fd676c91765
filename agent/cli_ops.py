"""The operators' commands: ``notify test`` (one test message, no agent needed), ``status`` and
``deliveries list|retry`` (through the running agent's API, with its token when one is set) and
``reload`` (SIGHUP to the agent named by the pid file in ``state_dir``, else ``POST /api/reload``).

Exit codes: 0 done (the test message delivered, the delivery queued, the agent serves — degraded
or not); 1 the channel did not take the test message, no agent answers, or the agent refused
(unknown delivery, not dead); 2 a bad config or an unknown notifier name (``agent.cli`` prints
config errors).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import Config

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
API_TIMEOUT = 10.0
STATUS_TIMEOUT = 5.0  # `status` is a health probe (Docker's HEALTHCHECK): answer well within its timeout

RELOAD_WAIT = 15.0  # seconds ``reload`` waits for the signalled agent's /health to show the result


def reload(config: Config) -> int:
    """Make the running agent re-read its config, then print what came of it.

    The agent that wrote ``state_dir/lifeguard.pid`` gets SIGHUP (as ``systemctl reload`` sends),
    and its ``/health`` is watched for the new ``last_reload``; without a live pid file (another
    host's state, a container), ``POST /api/reload`` does the same through the API."""
    import os
    import signal

    from agent.reload import read_pid

    pid = read_pid(config.agent.state_dir)
    if pid is None:
        answer = _call(config, "POST", "/api/reload", {})
        return EXIT_FAILED if answer is None else _print_reload(answer)
    before = _last_reload_at(config)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"lifeguard: cannot signal the agent (pid {pid}): {_reason(exc)}", file=sys.stderr)
        return EXIT_FAILED
    deadline = time.monotonic() + RELOAD_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.1)
        health = _health(config)
        if health is None:
            break
        last = health.get("last_reload")
        if last is not None and last.get("at") != before:
            return _print_reload(last)
    print(f"signalled the agent (pid {pid}) with SIGHUP; its log says how the reload went (reload.*)")
    return EXIT_OK


def _health(config: Config) -> dict[str, Any] | None:
    try:
        status, body = asyncio.run(_request("GET", agent_url(config) + "/health", {}, None))
    except (OSError, TimeoutError, ValueError):
        return None
    return body if status == 200 and isinstance(body, dict) else None


def _last_reload_at(config: Config) -> str | None:
    health = _health(config)
    last = None if health is None else health.get("last_reload")
    return None if last is None else str(last.get("at"))


def _print_reload(result: dict[str, Any]) -> int:
    if not result.get("ok"):
        errors = result.get("errors", [])
        print(f"lifeguard: reload refused, the running config is kept ({len(errors)} errors):", file=sys.stderr)
        for line in errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILED
    parts = [f"{what} {', '.join(names)}" for what, names in result.get("checks", {}).items() if names]
    parts += [f"notifiers {what} {', '.join(names)}" for what, names in result.get("notifiers", {}).items() if names]
    print("reloaded: " + ("; ".join(parts) if parts else "nothing changed"))
    for line in result.get("restart_needed", []):
        print(f"  {line}")
    return EXIT_OK


def notify_test(config: Config, name: str) -> int:
    """Send the test message through notifier ``name`` and print its answer."""
    names = [n.name for n in config.notifiers]
    if name not in names:
        known = ", ".join(names) if names else "none is configured"
        print(f"lifeguard: no notifier named {name!r} (known: {known})", file=sys.stderr)
        return EXIT_CONFIG
    from agent.trial import send_trial

    delivery = asyncio.run(send_trial(config, name, time.time()))
    print(f"{name}: {delivery.outcome} ({delivery.detail})")
    return EXIT_OK if delivery.outcome == "delivered" else EXIT_FAILED


def status(config: Config) -> int:
    """One screen on the running agent: ``/health``, plus its checks and open incidents when the API
    lets us read them. 0 while it serves (degraded too), 1 when nothing answers as an agent."""
    base = agent_url(config)
    try:
        health, checks, incidents = asyncio.run(_status_answers(base, config.agent.api.token))
    except (OSError, TimeoutError, ValueError) as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else _reason(exc)
        print(
            f"lifeguard: no agent answers at {base} ({reason}); is `lifeguard run` running with this config?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    for line in status_lines(base, health, checks, incidents):
        print(line)
    return EXIT_OK


def status_lines(base: str, health: dict[str, Any], checks: Any, incidents: Any) -> list[str]:
    """The ``status`` screen; ``checks`` / ``incidents`` are the API's answers, or None when refused."""
    problems = health.get("problems") or []
    state = "ok" if health.get("status") == "ok" else "DEGRADED (serving, with problems)"
    lines = [
        f"lifeguard {health.get('version', '?')} at {base}: {state}",
        f"  agent       {health.get('agent', '?')}, up {_duration(float(health.get('uptime_s', 0)))}",
    ]
    if isinstance(checks, dict):
        views = checks.get("checks", [])
        failing = [c["name"] for c in views if c.get("state") == "failing"]
        unknown = sum(c.get("state") == "unknown" for c in views)
        shown = ", ".join(failing[:5]) + (f" and {len(failing) - 5} more" if len(failing) > 5 else "")
        lines.append(
            f"  checks      {len(views)}, {len(failing)} failing{f' ({shown})' if failing else ''}"
            f"{f', {unknown} not run yet' if unknown else ''}, {health.get('checks_running', 0)} running now"
        )
    else:
        lines.append(f"  checks      {health.get('checks', '?')} (failing: unknown, {checks})")
    if isinstance(incidents, dict):
        rows = incidents.get("incidents", [])
        lines.append(f"  incidents   {len(rows)}{'+' if len(rows) >= 1000 else ''} open")
        lines.extend(f"{'':16}{r.get('sev') or r.get('severity')} {r['check']}: {r['title']}" for r in rows[:5])
        if len(rows) > 5:
            lines.append(f"                and {len(rows) - 5} more (GET /api/incidents?status=open)")
    else:
        lines.append(f"  incidents   unknown ({incidents})")
    lines.append(f"  outbox      {health.get('outbox_pending', '?')} pending, {health.get('outbox_dead', '?')} dead")
    if problems:
        lines.append("  problems")
        lines.extend(f"    - {p}" for p in problems)
    return lines


async def _status_answers(base: str, token: str | None) -> tuple[dict[str, Any], Any, Any]:
    """``/health`` (raises when it does not answer as an agent); the checks and the open incidents
    (each None-like: a short reason string, when the API refuses them — a wrong token)."""
    import aiohttp

    from agent.neterrors import describe_os_error

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=STATUS_TIMEOUT)
    try:
        async with aiohttp.ClientSession(base, timeout=timeout, headers=headers) as session:
            async with session.get("/health") as resp:
                try:
                    health = await resp.json(content_type=None)
                except ValueError:
                    raise ValueError(f"HTTP {resp.status} that is not JSON: not a Lifeguard agent?") from None
                if resp.status != 200 or not isinstance(health, dict) or "status" not in health:
                    raise ValueError(f"/health answered HTTP {resp.status}: not a Lifeguard agent?")
            extra: list[Any] = []
            for path in ("/api/checks", "/api/incidents?status=open&limit=1000"):
                async with session.get(path) as resp:
                    extra.append(await resp.json(content_type=None) if resp.status == 200 else f"HTTP {resp.status}")
    except aiohttp.ClientConnectorError as exc:
        raise OSError(None, describe_os_error(exc.os_error)) from None
    except aiohttp.ClientError as exc:
        raise OSError(None, f"{type(exc).__name__}: {exc}") from None
    return health, extra[0], extra[1]


def _duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``12m 3s``, ``45s``: the two largest units."""
    s = int(seconds)
    parts = [(s // 86400, "d"), (s // 3600 % 24, "h"), (s // 60 % 60, "m"), (s % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{n}{unit}" for n, unit in parts[:2])


def deliveries_list(config: Config, status: str | None, notifier: str | None, limit: int | None) -> int:
    query = {k: str(v) for k, v in (("status", status), ("notifier", notifier), ("limit", limit)) if v is not None}
    answer = _call(config, "GET", "/api/deliveries", query)
    if answer is None:
        return EXIT_FAILED
    rows = answer["deliveries"]
    table = [("ID", "STATUS", "NOTIFIER", "EVENT", "INCIDENT", "ATTEMPTS", "WHEN")]
    for d in rows:
        when = d["delivered_at"] or (f"next {d['next_attempt_at']}" if d["next_attempt_at"] else "")
        table.append(
            (str(d["id"]), d["status"], d["notifier"], d["event"], d["incident_id"], str(d["attempts"]), when)
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    errors = [""] + [d["last_error"] or "" for d in rows]
    for row, last_error in zip(table, errors, strict=True):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        print(line + (f"  last error: {last_error}" if last_error else ""))
    print(f"\n{len(rows)} deliver{'y' if len(rows) == 1 else 'ies'}")
    return EXIT_OK


def deliveries_retry(config: Config, delivery_id: str) -> int:
    answer = _call(config, "POST", f"/api/deliveries/{delivery_id}/retry", {})
    if answer is None:
        return EXIT_FAILED
    print(
        f"delivery {answer['id']} ({answer['event']} of {answer['incident_id']} to {answer['notifier']}) "
        f"is queued again, after {answer['attempts']} attempt{'s' * (answer['attempts'] != 1)}"
    )
    return EXIT_OK


def agent_url(config: Config) -> str:
    """Where this config's agent answers: its ``listen`` address, a wildcard one reached on loopback."""
    api = config.agent.api
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(api.host, api.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{api.port}"


def _call(config: Config, method: str, path: str, query: dict[str, str], body: Any = None) -> Any:
    """The API's JSON answer, or None after printing why there is none (no agent, an error)."""
    base = agent_url(config)
    try:
        status, body = asyncio.run(_request(method, base + path, query, config.agent.api.token, body))
    except (OSError, TimeoutError, ValueError) as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else _reason(exc)
        print(
            f"lifeguard: no agent answers at {base} ({reason}); is `lifeguard run` running with this config?",
            file=sys.stderr,
        )
        return None
    if status >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        print(f"lifeguard: the agent answered {status}: {error.get('message', body)}", file=sys.stderr)
        return None
    return body


async def _request(
    method: str, url: str, query: dict[str, str], token: str | None, body: Any = None
) -> tuple[int, Any]:
    import aiohttp

    from agent.neterrors import describe_os_error

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT)) as session:
            async with session.request(method, url, params=query, headers=headers, json=body) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    raise ValueError(f"HTTP {resp.status} that is not JSON: not a Lifeguard agent?") from None
                return resp.status, body
    except aiohttp.ClientConnectorError as exc:
        raise OSError(None, describe_os_error(exc.os_error)) from None
    except aiohttp.ClientError as exc:
        raise OSError(None, f"{type(exc).__name__}: {exc}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
