"""The ``lifeguard`` command: run, reload, check-config, once, status, gen-secret, notify test, deliveries,
incidents, silence, postmortem, report.

Exit codes: 0 fine; 1 a check failed (``once``), or ``run`` failed or crashed; 2 the config is
invalid (every error printed with its path); ``run`` only: 3 the database or ``state_dir`` is
unusable, 4 the API cannot listen on its address (each printed in one line with what to do).
``reload``, ``status``, ``notify test`` and ``deliveries``: see ``agent.cli_ops``; ``incidents``:
``agent.cli_incidents``; ``postmortem`` and ``report``: ``agent.cli_reports``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import Config
    from checks.base import AnyCheck, CheckResult

EXIT_OK, EXIT_FAILING, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand that is not given --log-level must not reset one given before it.
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=argparse.SUPPRESS,
        help="override agent.log_level",
    )
    with_config = argparse.ArgumentParser(add_help=False, parents=[common])
    with_config.add_argument(
        "-c", "--config", help="config file (default: ./config.yaml, then /etc/lifeguard/config.yaml)"
    )
    parser = argparse.ArgumentParser(
        prog="lifeguard", description="Monitoring agent with self-healing and alerting.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"lifeguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[with_config], help="run the agent (the daemon)")
    run.add_argument("--no-heal", action="store_true", help="dry run every heal: record, never restart")
    run.add_argument(
        "--move-corrupt-db",
        action="store_true",
        help="if lifeguard.db is not a usable database, rename it lifeguard.db.corrupt-<time> and start anew",
    )
    sub.add_parser(
        "reload", parents=[with_config], help="make the running agent re-read its config (SIGHUP or its API)"
    )
    sub.add_parser("check-config", parents=[with_config], help="validate the config and exit")
    sub.add_parser("once", parents=[with_config], help="run every check once, print a table")
    sub.add_parser(
        "status", parents=[with_config], help="the running agent's health in one screen (0 serving, 1 no agent)"
    )
    sub.add_parser("gen-secret", parents=[common], help="print a new whsec_ webhook secret")
    notify = sub.add_parser("notify", help="notifier tools").add_subparsers(dest="action", required=True)
    test = notify.add_parser("test", parents=[with_config], help="send a test message through one notifier")
    test.add_argument("name", help="the notifier's name in the config")
    deliveries = sub.add_parser("deliveries", help="the running agent's deliveries (its API)")
    actions = deliveries.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[with_config], help="deliveries, newest first")
    listing.add_argument("--status", choices=["pending", "dead", "delivered"])
    listing.add_argument("--notifier", help="only this notifier's")
    listing.add_argument("--limit", type=int, help="how many (1-1000, default 50)")
    retry = actions.add_parser("retry", parents=[with_config], help="put a dead delivery back in the queue")
    retry.add_argument("id", help="the delivery's id (deliveries list)")
    _incidents_parser(sub, with_config)
    _silence_parser(sub, with_config)
    pm = sub.add_parser(
        "postmortem", parents=[with_config], help="render an incident's postmortem draft (from the agent's API)"
    )
    pm.add_argument("id", help="the incident's id (incidents list)")
    pm.add_argument("-o", "--output", help="write it to this file (default: print it)")
    rep_ = sub.add_parser("report", parents=[with_config], help="the incident report: MTTA, MTTR, SLAs, targets")
    rep_.add_argument("--since", default="30d", help="how far back: 24h, 7d, 30d (default 30d)")
    rep_.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return parser


def _silence_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], with_config: argparse.ArgumentParser
) -> None:
    out = argparse.ArgumentParser(add_help=False, parents=[with_config])
    out.add_argument("--json", action="store_true", help="print the API's JSON answer")
    silence = sub.add_parser("silence", help="silences of the running agent (its API)")
    actions = silence.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", parents=[out], help="silence the checks it matches for a while")
    add.add_argument("--check", action="append", default=None, help="a check's name (repeatable)")
    add.add_argument("--tag", action="append", default=None, help="a tag (repeatable)")
    add.add_argument("--container", action="append", default=None, help="a container (repeatable)")
    add.add_argument("--duration", required=True, help="how long: 30m, 2h, 1d")
    add.add_argument("--comment", default=None, help="why")
    add.add_argument("--by", default=None, help="who (default: $USER@host)")
    actions.add_parser("list", parents=[out], help="active silences and those ended in the last day")
    rm = actions.add_parser("rm", parents=[out], help="end a silence now")
    rm.add_argument("id", help="the silence's id (silence list)")


def _incidents_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], with_config: argparse.ArgumentParser
) -> None:

    out = argparse.ArgumentParser(add_help=False, parents=[with_config])
    out.add_argument("--json", action="store_true", help="print the API's JSON answer")
    by = argparse.ArgumentParser(add_help=False, parents=[out])
    by.add_argument("--by", default=None, help="who does it (default: $USER@host)")
    one = argparse.ArgumentParser(add_help=False, parents=[by])
    one.add_argument("id", help="the incident's id (incidents list)")
    incidents = sub.add_parser("incidents", help="the running agent's incidents (its API)")
    actions = incidents.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[out], help="incidents, newest first")
    listing.add_argument("--status", choices=["open", "acknowledged", "resolved"], help="open: every unresolved one")
    listing.add_argument("--limit", type=int, help="how many (1-1000, default 50)")
    show = actions.add_parser("show", parents=[out], help="one incident, its updates, comments and timeline")
    show.add_argument("id", help="the incident's id")
    actions.add_parser("ack", parents=[one], help="acknowledge: someone is on it")
    update = actions.add_parser("update", parents=[one], help="post a public status update")
    update.add_argument("--phase", required=True, choices=["investigating", "identified", "monitoring"])
    update.add_argument("-m", "--message", required=True, help="what the status page and chat show")
    comment = actions.add_parser("comment", parents=[one], help="comment on an incident")
    comment.add_argument("-m", "--message", required=True)
    comment.add_argument("--internal", action="store_true", help="only to notifiers with internal: true")
    resolve = actions.add_parser("resolve", parents=[one], help="resolve by hand")
    resolve.add_argument("--root-cause")
    resolve.add_argument("--solution")
    resolve.add_argument("--follow-up", action="append", dest="follow_ups", help="an action item (repeatable)")
    opening = actions.add_parser("open", parents=[by], help="open an incident by hand (tied to no check)")
    opening.add_argument("--title", required=True)
    opening.add_argument("--severity", required=True, choices=["critical", "high", "medium", "low"])
    opening.add_argument("--description")
    opening.add_argument("--service", action="append", dest="services", help="an affected service (repeatable)")
    opening.add_argument("--tag", action="append", dest="tags", help="a tag (repeatable)")
    opening.add_argument("--assignee")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.log_level = getattr(args, "log_level", None)
    if args.command == "gen-secret":
        from agent.signing import generate_secret

        print(generate_secret())
        return EXIT_OK
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    path, config = loaded
    if args.command == "check-config":
        print(f"ok: {config.summary()}")
        return EXIT_OK
    if args.command in ("notify", "deliveries", "status", "reload", "incidents", "silence", "postmortem", "report"):
        return _operate(args, config)
    level = args.log_level or config.agent.log_level
    from agent import logging as lg
    from agent.plugins import secret_values

    if args.command == "once":
        lg.configure(level if args.log_level else "warning", stream=sys.stderr, secrets=secret_values(config))
        return asyncio.run(_once(config))
    lg.configure(level, secrets=secret_values(config))
    _warn_if_secrets_exposed(path, secret_values(config))
    from agent.daemon import Daemon

    def relog(reloaded: Config) -> None:  # a reload: the new config's level (unless given here) and secrets
        lg.configure(args.log_level or reloaded.agent.log_level, secrets=secret_values(reloaded))

    daemon = Daemon(
        config, heal=False if args.no_heal else None, move_corrupt_db=args.move_corrupt_db, relog=relog
    )
    code = asyncio.run(daemon.run())
    if daemon.refused is not None:
        print(f"lifeguard: {daemon.refused}", file=sys.stderr)
    return _without_stuck_threads(code)


def _operate(args: argparse.Namespace, config: Config) -> int:
    from agent import cli_ops
    from agent import logging as lg
    from agent.plugins import secret_values

    lg.configure(args.log_level or "warning", stream=sys.stderr, secrets=secret_values(config))
    if args.command == "status":
        return cli_ops.status(config)
    if args.command == "notify":
        return cli_ops.notify_test(config, args.name)
    if args.command == "reload":
        return cli_ops.reload(config)
    if args.command == "incidents":
        return _incidents(args, config)
    if args.command == "silence":
        return _silence(args, config)
    if args.command in ("postmortem", "report"):
        from agent import cli_reports

        if args.command == "postmortem":
            return cli_reports.postmortem(config, args.id, args.output)
        return cli_reports.report(config, args.since, args.json)
    if args.action == "list":
        return cli_ops.deliveries_list(config, args.status, args.notifier, args.limit)
    return cli_ops.deliveries_retry(config, args.id)


def _silence(args: argparse.Namespace, config: Config) -> int:
    from agent import cli_incidents as ci

    if args.action == "list":
        return ci.silences(config, args.json)
    if args.action == "rm":
        return ci.command(config, "DELETE", f"/api/silences/{args.id}", {}, args.json, "{id} ended")
    match = {"check": args.check, "tags": args.tag, "container": args.container}
    body = {
        "match": {k: v for k, v in match.items() if v},
        "duration": args.duration,
        "comment": args.comment,
        "created_by": args.by or ci.default_author(),
    }
    return ci.command(config, "POST", "/api/silences", body, args.json, "{id} silences until {ends_at}")


def _incidents(args: argparse.Namespace, config: Config) -> int:
    from agent import cli_incidents as ci

    if args.action == "list":
        return ci.listing(config, args.status, args.limit, args.json)
    if args.action == "show":
        return ci.show(config, args.id, args.json)
    by = args.by or ci.default_author()
    if args.action == "open":
        body = {
            "title": args.title, "severity": args.severity, "description": args.description,
            "affected_services": args.services, "tags": args.tags, "assignee": args.assignee, "by": by,
        }
        return ci.command(config, "POST", "/api/incidents", body, args.json, "opened {id}: [{sev}] {title}")
    path = f"/api/incidents/{args.id}"
    if args.action == "ack":
        said = "{id} acknowledged by {acknowledged_by}"
        return ci.command(config, "POST", f"{path}/ack", {"by": by}, args.json, said)
    if args.action == "update":
        body = {"phase": args.phase, "message": args.message, "author": by}
        return ci.command(config, "POST", f"{path}/updates", body, args.json, "{id} is now {phase}")
    if args.action == "comment":
        body = {"text": args.message, "internal": args.internal, "author": by}
        return ci.command(config, "POST", f"{path}/comments", body, args.json, "{id}: comment added")
    body = {"by": by, "root_cause": args.root_cause, "solution": args.solution, "follow_ups": args.follow_ups}
    return ci.command(config, "POST", f"{path}/resolve", body, args.json, "{id} resolved by {resolved_by}")


def _warn_if_secrets_exposed(path: Path, secrets: list[str]) -> None:
    """Warn when the config file spells out a secret and every user may read it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    if not mode & stat.S_IROTH or not any(secret in text for secret in secrets):
        return
    import structlog

    structlog.get_logger("lifeguard.config").warning(
        "config.readable_by_others",
        file=str(path),
        mode=f"{mode:04o}",
        fix=f"chmod 640 {path} (or 600), or move the secrets to the environment as ${{VAR}}",
    )


def _without_stuck_threads(code: int) -> int:
    """Exit now if a worker thread is still stuck on a hung peer (a host snapshot for a hung
    mount, a blocking plugin): the daemon has closed everything
    it owns, and the interpreter would otherwise wait for that thread before exiting."""
    me = threading.current_thread()
    deadline = time.monotonic() + 1.0
    for thread in threading.enumerate():
        if thread is not me and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
    if not stuck:
        return code
    import structlog

    structlog.get_logger("lifeguard.daemon").warning("daemon.threads_abandoned", threads=stuck)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _load(path: str | None) -> tuple[Path, Config] | None:
    from agent.config import ConfigError, find_config, load_config

    try:
        found = find_config(path)
        return found, load_config(found)
    except ConfigError as exc:
        print(f"lifeguard: invalid config ({len(exc.errors)} error{'s' * (len(exc.errors) != 1)}):", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return None


async def _once(config: Config) -> int:
    from agent.plugins import needs
    from checks import CheckContext, build_check

    docker = None
    if "docker" in needs(config):
        from agent.dockerclient import DockerEngine

        docker = DockerEngine(config.docker.url, timeout=config.docker.timeout)
    context = CheckContext(docker=docker)
    try:
        checks = [build_check(c, context) for c in config.checks]
        results = await run_all(checks, config.agent.max_concurrent_checks)
    finally:
        await context.close()
        if docker is not None:
            await docker.close()
    from agent.plugins import secret_values
    from agent.redact import value_masker

    mask = value_masker(secret_values(config))  # as the engine masks every message it keeps
    rows = [("CHECK", "TYPE", "TARGET", "STATUS", "LATENCY", "MESSAGE")]
    for check, r in zip(checks, results, strict=True):
        rows.append(
            (check.name, check.config.type, check.target, {"ok": "ok", "warning": "warning"}.get(r.status, "FAILING"),
             f"{r.latency * 1000:.0f}ms", mask(r.message))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[5])
    failing = sum(not r.ok for r in results)
    print(f"\n{len(results) - failing} passing, {failing} failing")
    return EXIT_FAILING if failing else EXIT_OK


async def run_all(checks: list[AnyCheck], max_concurrent: int) -> list[CheckResult]:
    """Run every check once, at most ``max_concurrent`` at a time (the daemon's own slots)."""
    from agent.scheduler import Scheduler

    scheduler = Scheduler(checks, _ignore, max_concurrent=max_concurrent)
    return list(await asyncio.gather(*(scheduler.run_once(c) for c in checks)))


async def _ignore(_result: CheckResult) -> None:
    return None


if __name__ == "__main__":
    sys.exit(main())
