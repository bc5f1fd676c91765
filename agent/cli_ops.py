"""The operators' commands: ``notify test`` (one test message, no agent needed),
``deliveries list|retry`` (through the running agent's API, with its token when one is set) and
``reload`` (SIGHUP to the agent named by the pid file in ``state_dir``, else ``POST /api/reload``).

Exit codes: 0 done (the test message delivered, the delivery queued); 1 the channel did not take
the test message, no agent answers, or the agent refused (unknown delivery, not dead);
2 a bad config or an unknown notifier name (``agent.cli`` prints config errors).
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


def _call(config: Config, method: str, path: str, query: dict[str, str]) -> Any:
    """The API's JSON answer, or None after printing why there is none (no agent, an error)."""
    base = agent_url(config)
    try:
        status, body = asyncio.run(_request(method, base + path, query, config.agent.api.token))
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


async def _request(method: str, url: str, query: dict[str, str], token: str | None) -> tuple[int, Any]:
    import aiohttp

    from agent.neterrors import describe_os_error

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT)) as session:
            async with session.request(method, url, params=query, headers=headers) as resp:
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
