"""Secrets never leave: planted secrets, every output searched, 0 occurrences allowed.

The first tests pin each leak that was found (a check URL's credentials in the incident
``target``, a container's secret env values in the check message, configured secrets in check
messages) at the unit where it is fixed. The end-to-end test then plants secrets everywhere an
operator would put them — container env values echoed by health commands and logs, URL user-info
and query tokens, ``Authorization`` headers, a webhook secret, the API token — runs the real
agent against a real receiver and the suite's real dockerd, and greps every output: received
payloads, ``events.jsonl``, every API answer, the agent's log, ``lifeguard once`` and the SQLite
files (the ``-wal`` included). The last test keeps shells out of the agent's code.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from structlog.testing import capture_logs

from agent.config import load_config
from agent.engine import Engine
from agent.plugins import secret_values
from agent.redact import REDACTED, url_secrets
from agent.store import Store
from checks import CheckContext, build_check
from checks.base import CheckResult
from checks.container import container_outcome
from checks.http import HttpCheckConfig
from tests.fixtures_agent import ROOT, AgentProcess, LocalServer, Receiver, agent_config, wait_until
from tests.fixtures_docker import MS, RunContainer, unique

URL_USER, URL_PASSWORD, URL_TOKEN = "bob", "OncePw123", "OnceTok456"


def secret_url(port: int, path: str = "/x") -> str:
    return f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{port}{path}?token={URL_TOKEN}&page=2"


def assert_absent(planted: dict[str, str], outputs: dict[str, bytes | str]) -> None:
    """No planted value in any output; the failure names every (secret, output) pair found."""
    found = []
    for where, data in outputs.items():
        blob = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        for what, value in planted.items():
            if value.encode() in blob:
                found.append(f"{what} ({value!r}) in {where}")
    assert not found, "secrets leaked:\n  " + "\n  ".join(found)


class AuthTarget(LocalServer):
    """Answers 200 only to the URL's user-info (as Basic auth) and its query token."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str | None, str | None]] = []

    async def _x(self, request: web.Request) -> web.Response:
        auth, token = request.headers.get("Authorization"), request.query.get("token")
        self.seen.append((auth, token))
        expected = "Basic " + base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()
        return web.Response(status=200 if (auth, token) == (expected, URL_TOKEN) else 401)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/x", self._x)


# -- defect 2: a check URL's credentials in the incident target ---------------------------------


async def test_an_http_check_shows_its_url_redacted_but_probes_with_the_real_one() -> None:
    server = AuthTarget()
    await server.start()
    context = CheckContext()
    try:
        url = secret_url(server.port)
        check = build_check(HttpCheckConfig.model_validate(dict(name="web", type="http", url=url)), context)
        assert check.target == f"http://{REDACTED}@127.0.0.1:{server.port}/x?token={REDACTED}&page=2"
        result = await check.run()
    finally:
        await context.close()
        await server.stop()
    assert result.ok, result.message  # the credentials still reach the target
    assert server.seen and server.seen[-1][1] == URL_TOKEN


async def test_an_incident_stores_and_shows_the_redacted_target(running_store: Store) -> None:
    cfg = HttpCheckConfig.model_validate(dict(name="web", type="http", url=secret_url(9), open_after="0s", notify=["ops"]))
    engine = Engine(running_store, [build_check(cfg, CheckContext())], notify_all=["ops"], clock=lambda: 1000.0)
    await engine.restore()
    await engine.on_result(CheckResult("web", False, 1000.0, 0.001, "connection refused"))
    incidents = await running_store.run(running_store.incidents.list, None, 10)
    assert len(incidents) == 1
    row = await running_store.run(running_store.incidents.get, incidents[0]["id"])
    views = engine.check_views()
    await engine.drain(5)
    shown = {"incident row": json.dumps(row, default=str), "check view": views[0].target}
    assert_absent({"URL password": URL_PASSWORD, "URL token": URL_TOKEN}, shown)
    assert row["target"] == views[0].target == f"http://{REDACTED}@127.0.0.1:9/x?token={REDACTED}&page=2"


def test_once_prints_no_url_credentials(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    cfg = agent_config([{"name": "web", "type": "http", "url": secret_url(9)}], [])
    path.write_text(yaml.safe_dump(cfg))
    once = subprocess.run(
        [sys.executable, "-m", "agent.cli", "once", "-c", str(path)],
        capture_output=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert once.returncode == 1, once.stderr
    assert f"http://{REDACTED}@127.0.0.1:9/x?token={REDACTED}" in once.stdout.decode()
    assert_absent({"URL password": URL_PASSWORD, "URL token": URL_TOKEN},
                  {"stdout": once.stdout, "stderr": once.stderr})


# -- defect 3: a container's secret env values in the check message -----------------------------

CONTAINER_ENV = ["PATH=/bin", "DB_PASSWORD=HcPw789xyz", "DATABASE_URL=postgres://app:UrlPw321@db/app", "DEBUG=true"]


def test_an_unhealthy_containers_message_masks_its_secret_env_values() -> None:
    attrs = {
        "Config": {"Env": CONTAINER_ENV},
        "State": {"Status": "running", "Running": True, "Health": {
            "Status": "unhealthy", "FailingStreak": 3,
            "Log": [{"ExitCode": 1, "Output": "health sees HcPw789xyz and UrlPw321 (debug true)\n"}],
        }},
    }
    outcome = container_outcome("db", attrs)
    assert not outcome.ok
    assert outcome.message == f"container 'db' is unhealthy: health sees {REDACTED} and {REDACTED} (debug true)"
    assert_absent({"DB_PASSWORD": "HcPw789xyz", "URL password": "UrlPw321"},
                  {"message": outcome.message, "details": json.dumps(outcome.details)})


def test_an_exited_containers_error_masks_its_secret_env_values() -> None:
    attrs = {
        "Config": {"Env": CONTAINER_ENV},
        "State": {"Status": "exited", "ExitCode": 1, "Error": "cannot log in with HcPw789xyz"},
    }
    outcome = container_outcome("db", attrs)
    assert outcome.message == f"container 'db' is exited (exit code 1, cannot log in with {REDACTED})"


def test_a_long_probe_output_is_masked_before_it_is_cut() -> None:
    secret = "S" * 30 + "Tail9"
    output = "x" * 180 + " " + secret  # the cut at 200 characters falls inside the secret
    attrs = {
        "Config": {"Env": [f"API_KEY={secret}"]},
        "State": {"Status": "running", "Health": {"Status": "unhealthy", "Log": [{"ExitCode": 1, "Output": output}]}},
    }
    message = container_outcome("app", attrs).message
    assert "SSSSSSSSSS" not in message


# -- configured secrets in any check's message --------------------------------------------------


async def test_the_engine_masks_configured_secrets_in_every_check_message(running_store: Store) -> None:
    secret = "CfgSecret-5d1e"
    cfg = HttpCheckConfig.model_validate(dict(name="web", type="http", url="http://127.0.0.1:9/", open_after="0s", notify=["ops"]))
    now = {"t": 1000.0}
    engine = Engine(running_store, [build_check(cfg, CheckContext())], notify_all=["ops"],
                    secrets=[secret], clock=lambda: now["t"])
    await engine.restore()
    with capture_logs() as logs:  # structlog's own capture: the log processors' masking is bypassed
        for ok in (False, False):
            now["t"] += 1
            await engine.on_result(CheckResult("web", ok, now["t"], 0.001, f"HTTP 401: server said {secret}"))
    incident_id = engine.tracked["web"].state.incident_id
    assert incident_id is not None
    await engine.drain(5)
    row = await running_store.run(running_store.incidents.get, incident_id)
    results = await running_store.run(running_store.results.recent, "web", 10)
    last = engine.check_views()[0].last
    assert last is not None
    assert row["title"] == f"web failing: HTTP 401: server said {REDACTED}"
    assert_absent({"configured secret": secret}, {
        "incident row and timeline": json.dumps(row, default=str),
        "results table": json.dumps(results, default=str),
        "check view": last.message,
        "log events": json.dumps(logs, default=str),
    })


# -- the credentials inside configured URLs, wherever they turn up on their own -----------------


@pytest.mark.parametrize(("url", "secrets"), [
    ("http://bob:OncePw123@h/x?token=OnceTok456&page=2", ["OncePw123", "OnceTok456"]),
    ("https://ghp_TokenAsUser@github.com/o/r.git", ["ghp_TokenAsUser"]),
    ("http://u:p%40ss%2Fword@h/", ["p%40ss%2Fword", "p@ss/word"]),
    ("https://h/cb#access_token=Frag123&state=xyz", ["Frag123"]),
    ("https://h/x?api_key=K3y1&limit=5&sig=", ["K3y1"]),
    ("http://127.0.0.1:9/health", []),
    ("http://[::1/broken", []),
])
def test_url_secrets_are_the_password_and_the_secret_named_parameters(url: str, secrets: list[str]) -> None:
    assert url_secrets(url) == secrets


def test_a_configured_urls_credentials_are_secret_values(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    cfg = agent_config(
        [{"name": "web", "type": "http", "url": secret_url(9)}],
        [{"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/hook?token=HookQTok-4d2f"}],
    )
    path.write_text(yaml.safe_dump(cfg))
    assert set(secret_values(load_config(path))) >= {URL_PASSWORD, URL_TOKEN, "HookQTok-4d2f"}


class EchoingReceiver(LocalServer):
    """Refuses every delivery with a 500 that repeats the URL's token on its own."""

    async def _hook(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"unknown token {request.query.get('token')}")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)


async def test_a_webhook_receivers_echo_of_the_url_token_is_masked_in_the_delivery_detail() -> None:
    import aiohttp

    from actions.notifiers.webhook import WebhookNotifier, WebhookNotifierConfig

    token = "HookQTok-4d2f"
    server = EchoingReceiver()
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            config = WebhookNotifierConfig.model_validate(dict(
                name="ops", type="webhook", url=f"http://127.0.0.1:{server.port}/hook?token={token}", timeout="2s"
            ))
            delivery = await WebhookNotifier(config, lambda: session).send("evt_1", b"{}")
    finally:
        await server.stop()
    assert delivery.outcome == "retry"
    assert delivery.detail == f"HTTP 500: unknown token {REDACTED}"


# -- no shells in the agent's code ---------------------------------------------------------------

_SHELL_CALLS = {
    ("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execlp"),
    ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
}
_SHELL_METHODS = {"subprocess_shell", "create_subprocess_shell", "system", "popen", "getoutput", "getstatusoutput"}
_SHELLS = {"sh", "bash", "dash", "zsh", "ash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash", "cmd", "cmd.exe"}


def shell_uses(source: str, filename: str = "<source>") -> list[str]:
    """Every way ``source`` could hand a string to a shell: ``shell=`` not literally False,
    ``os.system`` / ``os.popen`` and kin, ``*_shell`` subprocess calls, ``sh -c`` argument lists."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            where = f"{filename}:{node.lineno}"
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}: shell={ast.unparse(kw.value)}")
            func = node.func
            if isinstance(func, ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else None
                if (owner, func.attr) in _SHELL_CALLS or func.attr in _SHELL_METHODS:
                    found.append(f"{where}: {ast.unparse(func)}()")
            elif isinstance(func, ast.Name) and func.id in {"system", "popen", "getoutput", "getstatusoutput"}:
                found.append(f"{where}: {func.id}()")
        if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) >= 2:
            first, second = node.elts[0], node.elts[1]
            if (
                isinstance(first, ast.Constant) and first.value in _SHELLS
                and isinstance(second, ast.Constant) and second.value in ("-c", "/c")
            ):
                found.append(f"{filename}:{node.lineno}: [{first.value!r}, {second.value!r}, ...]")
    return found


def agent_sources() -> Iterator[Path]:
    for package in ("agent", "checks", "actions"):
        yield from sorted((ROOT / package).rglob("*.py"))


def test_the_shell_finder_finds_each_way_into_a_shell() -> None:
    hostile = """
import os, subprocess, asyncio
from os import system
subprocess.run("x | y", shell=True)
subprocess.Popen(cmd, shell=flag)
os.system("ls")
os.popen("ls")
system("ls")
asyncio.create_subprocess_shell("ls")
loop.subprocess_shell(factory, "ls")
subprocess.getoutput("ls")
subprocess.run(["sh", "-c", "a | b"])
subprocess.run(("/bin/bash", "-c", "a"))
subprocess.run(["ls", "-l"], shell=False)
"""
    lines = {int(use.split(":")[1]) for use in shell_uses(hostile)}
    assert lines == set(range(4, 14))  # each line but the last, which is shell=False


def test_no_shell_anywhere_in_the_agent() -> None:
    sources = list(agent_sources())
    assert len(sources) > 20  # the walk found the packages
    found = [use for path in sources for use in shell_uses(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "a shell in the agent's code:\n  " + "\n  ".join(found)


# -- the whole agent, secrets planted everywhere ------------------------------------------------

DB_PASSWORD, DB_URL_PASSWORD = "DbPw-7c41e9", "DbUrlPw-93ab"
API_TOKEN = "ApiTok-e2e-55f0a1"
HEADER_TOKEN, HEADER_KEY = "HdrTok-1b7d3c", "HdrKey-0e6a92"
HOOK_URL_TOKEN = "HookQTok-4d2f"
COOKIE = "SessCookie-8a1c"


class EchoTarget(LocalServer):
    """Fails with 500 and echoes what it was sent (headers, query, the Basic credentials in plain
    words) plus a session cookie, as careless services do; answers 200 once ``healthy``."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = False

    async def _echo(self, request: web.Request) -> web.Response:
        said = " ".join(request.query.values())
        if request.headers.get("Authorization", "").startswith("Basic "):
            said += " " + base64.b64decode(request.headers["Authorization"][6:]).decode().replace(":", " ")
        body = {"headers": dict(request.headers), "query": dict(request.query), "note": f"url={request.url} {said}"}
        response = web.json_response(body, status=200 if self.healthy else 500)
        response.headers["Set-Cookie"] = f"session={COOKIE}; HttpOnly"
        return response

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/echo", self._echo)


class RawReceiver(Receiver):
    """The fixtures' verifying receiver, keeping each body as the bytes that arrived. Its first
    answer is a 500 that echoes the request line and headers back, as careless receivers do."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret=secret)
        self.bodies: list[bytes] = []

    async def _hook(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        if len(self.bodies) == 1:
            echo = f"refused {request.url} token={request.query.get('token')} headers={dict(request.headers)}"
            return web.Response(status=500, text=echo)
        return await super()._hook(request)


def state_files(state_dir: Path) -> dict[str, bytes]:
    """Every file under the state dir (the database, its -wal and -shm, events.jsonl), as bytes."""
    return {str(p.relative_to(state_dir)): p.read_bytes() for p in sorted(state_dir.rglob("*")) if p.is_file()}


async def api_get(agent: AgentProcess, path: str) -> bytes:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with session.get(f"http://127.0.0.1:{agent.api_port}{path}", headers=headers) as r:
            return await r.read()


@pytest.mark.docker
async def test_no_planted_secret_reaches_any_output(
    docker_url: str, run_container: RunContainer, spawn_agent: Any, tmp_path: Path
) -> None:
    from agent.signing import generate_secret

    hook_secret = generate_secret()
    planted = {
        "check URL password": URL_PASSWORD,
        "check URL token": URL_TOKEN,
        "check Authorization header": HEADER_TOKEN,
        "check API-key header": HEADER_KEY,
        "container DB_PASSWORD": DB_PASSWORD,
        "container DATABASE_URL password": DB_URL_PASSWORD,
        "API token": API_TOKEN,
        "webhook secret": hook_secret,
        "webhook secret key": hook_secret.removeprefix("whsec_"),
        "webhook URL token": HOOK_URL_TOKEN,
        "target's session cookie": COOKIE,
    }
    target, receiver = EchoTarget(), RawReceiver(hook_secret)
    await target.start()
    await receiver.start()
    try:
        # Says its secrets at boot (logs) and on every health probe; GREETING is not secret-named
        # but holds the API token, which only the agent's configured secrets can catch.
        container = unique("leaky")
        say = 'db password $DB_PASSWORD, url $DATABASE_URL, greeting $GREETING'
        run_container(
            container,
            ["sh", "-c", f'echo "boot: {say}"; env; trap "exit 0" TERM; sleep 3600 & wait'],
            environment={
                "DB_PASSWORD": DB_PASSWORD,
                "DATABASE_URL": f"postgres://app:{DB_URL_PASSWORD}@db/app",
                "GREETING": API_TOKEN,
            },
            healthcheck={"test": ["CMD-SHELL", f'echo "health sees {say}"; exit 1'],
                         "interval": 100 * MS, "timeout": 1000 * MS, "retries": 1},
        )
        checks = [
            {"name": "db", "type": "container", "container": container, "interval": "2s", "timeout": "2s"},  # a slow engine under load must not turn it into a timeout
            # SEV-1: their postmortem drafts (under state/postmortems) are searched with the state files.
            {"name": "web-userinfo", "type": "http", "url": secret_url(target.port, "/echo"), "severity": "critical"},
            {"name": "web-auth", "type": "http", "url": f"http://127.0.0.1:{target.port}/echo", "severity": "critical",
             "headers": {"Authorization": f"Bearer {HEADER_TOKEN}", "X-Api-Key": HEADER_KEY}},
        ]
        notifiers = [
            {"name": "ops", "type": "webhook", "url": f"{receiver.url}?token={HOOK_URL_TOKEN}",
             "secret": hook_secret, "timeout": "2s"},
            {"name": "log", "type": "file"},
        ]
        cfg = agent_config(checks, notifiers)
        cfg["agent"]["api"]["token"] = API_TOKEN
        cfg["docker"] = {"url": docker_url, "timeout": "3s"}
        agent = spawn_agent(cfg)
        await agent.ready()
        names = {c["name"] for c in checks}

        def opened() -> set[str]:
            return {e["incident"]["check"] for e in receiver.of("incident.opened")}

        await wait_until(lambda: opened() == names, 20, "an incident.opened for every check")

        once = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "once", "--log-level", "debug", "-c", str(agent.config_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        once_out, once_err = await asyncio.wait_for(once.communicate(), 60)
        assert once.returncode == 1, once_err
        check_config = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "check-config", "-c", str(agent.config_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        check_config_out, _ = await asyncio.wait_for(check_config.communicate(), 60)
        assert check_config.returncode == 0, check_config_out

        target.healthy = True
        resolved = {"web-userinfo", "web-auth"}
        await wait_until(
            lambda: {e["incident"]["check"] for e in receiver.of("incident.resolved")} == resolved,
            20, "incident.resolved for both http checks",
        )
        events_file = tmp_path / "state" / "events.jsonl"
        await wait_until(
            lambda: events_file.exists() and events_file.read_text().count("incident.resolved") == 2,
            10, "both resolutions in events.jsonl",
        )

        drafts = tmp_path / "state" / "postmortems"
        await wait_until(lambda: drafts.is_dir() and len(list(drafts.glob("inc_*.md"))) == 2, 20,
                         "both SEV-1 incidents' postmortem drafts")

        answers: dict[str, bytes] = {}
        for path in ("/health", "/api/checks", "/api/incidents", "/api/incidents?status=open", "/api/incidents/inc_none"):
            answers[f"GET {path}"] = await api_get(agent, path)
        incident_ids = [i["id"] for i in json.loads(answers["GET /api/incidents"])["incidents"]]
        assert len(incident_ids) == 3
        for incident_id in incident_ids:
            for path in (f"/api/incidents/{incident_id}", f"/api/incidents/{incident_id}/evidence"):
                answers[f"GET {path}"] = await api_get(agent, path)
        running_state = state_files(tmp_path / "state")
        assert any(name.endswith("-wal") for name in running_state), sorted(running_state)

        agent.signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        await target.stop()
        await receiver.stop()

    outputs: dict[str, bytes | str] = {
        **{f"webhook body #{n}": body for n, body in enumerate(receiver.bodies, 1)},
        **answers,
        **{f"state file {name} (running)": data for name, data in running_state.items()},
        **{f"state file {name} (stopped)": data for name, data in state_files(tmp_path / "state").items()},
        "agent log": agent.log_text(),
        "once stdout": once_out,
        "once stderr": once_err,
        "check-config output": check_config_out,
    }
    assert_absent(planted, outputs)

    # Not vacuous: the masked forms of what was said did arrive where they were looked for.
    db = next(json.loads(b) for b in receiver.bodies if json.loads(b)["incident"]["check"] == "db")
    assert db["incident"]["title"].startswith(f"db failing: container '{container}' is unhealthy: health sees")
    assert f"db password {REDACTED}" in db["incident"]["title"] and f"greeting {REDACTED}" in db["incident"]["title"]
    assert any(f"boot: db password {REDACTED}" in line for line in db["evidence"]["container"]["logs"])
    web = next(json.loads(b) for b in receiver.bodies if json.loads(b)["incident"]["check"] == "web-userinfo")
    assert web["incident"]["target"] == f"http://{REDACTED}@127.0.0.1:{target.port}/echo?token={REDACTED}&page=2"
    assert web["evidence"]["response"]["status"] == 500
    assert f"{REDACTED}@127.0.0.1" in once_out.decode()
    assert len(receiver.bodies) >= 5 and events_file.exists()
