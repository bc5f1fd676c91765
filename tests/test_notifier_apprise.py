"""The Apprise notifier against a real local server (a ``json://`` URL), its config rules, and the
config error when the library is missing (a subprocess where ``import apprise`` fails)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from actions.notifiers import build_notifier
from actions.notifiers.apprise import AppriseNotifier, AppriseNotifierConfig, render_json
from agent.config import ConfigError, load_config
from agent.events import Event, Notification
from agent.plugins import secret_values
from tests.fixtures_agent import ROOT, LocalServer, free_port

PLANTED = "pl4nted-apprise-pass-0123456789"
T0 = 1_795_000_000.0


class JsonService(LocalServer):
    """What Apprise's ``json://`` posts to: keeps each body, answers ``status``."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.got: list[dict[str, Any]] = []
        self.threads: list[str] = []

    def url(self, path: str = "notify") -> str:
        return f"json://lifeguard:{PLANTED}@127.0.0.1:{self.port}/{path}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        self.got.append({"path": request.path, "auth": request.headers.get("Authorization"),
                         "body": json.loads(await request.read())})
        return web.Response(status=self.status, text=f"refused, your password was {PLANTED}")


@pytest.fixture
async def service() -> Any:
    s = JsonService()
    await s.start()
    yield s
    await s.stop()


def notification(check: str = "api") -> Notification:
    incident = {
        "id": "inc_0123456789abcdef", "check": check, "check_type": "http", "status": "open", "severity": "high",
        "sev": "SEV-2", "title": f"{check} failing: HTTP 500", "opened_at": "2026-11-18T11:06:40.000Z",
        "resolved_at": None, "target": "http://127.0.0.1/health", "container": None, "resolve_reason": None,
        "heal": None, "timeline": [{"at": "2026-11-18T11:06:40.000Z", "kind": "opened", "message": "HTTP 500"}],
    }
    event = Event("evt_1", "incident.opened", incident["id"], 1, T0 + 30, {"name": "web-01", "version": "0.1.0"},
                  incident)
    return Notification(event, None, "http://127.0.0.1:9810/api/incidents/inc_0123456789abcdef/evidence")


def apprise_notifier(*urls: str, timeout: str = "5s") -> AppriseNotifier:
    cfg = AppriseNotifierConfig.model_validate({"name": "push", "type": "apprise", "urls": list(urls), "timeout": timeout})
    notifier = build_notifier(cfg, lambda: None)  # type: ignore[arg-type, return-value]
    assert isinstance(notifier, AppriseNotifier)
    return notifier


def test_render_is_the_first_line_and_the_text() -> None:
    body = json.loads(render_json(notification()))
    assert body == {
        "title": "[SEV-2][OPENED] api failing: HTTP 500",
        "body": "[SEV-2][OPENED] api failing: HTTP 500\n\nCheck: api\nTarget: http://127.0.0.1/health\n"
                "Agent: web-01\nSeverity: SEV-2 (high)\nLasting: 30s\nLast error: HTTP 500",
    }


async def test_a_sent_message_reaches_the_service_off_the_event_loop(service: JsonService) -> None:
    notifier = apprise_notifier(service.url("a"), service.url("b"))
    loop_thread = threading.get_ident()
    try:
        result = await notifier.send("evt_1", render_json(notification("<b>*`@channel</code>")))
        assert result.outcome == "delivered" and result.detail == "sent to 2 services"
        assert sorted(g["path"] for g in service.got) == ["/a", "/b"]
        got = service.got[0]["body"]
        assert got["title"] == "[SEV-2][OPENED] <b>*`@channel</code> failing: HTTP 500"  # as text, untouched
        assert got["message"].startswith(got["title"] + "\n\nCheck: <b>*`@channel</code>\n")
        assert service.got[0]["auth"] and service.got[0]["auth"].startswith("Basic ")
        sender = notifier._sender
        assert sender is not None and sender._threads  # its own thread, not the loop's nor the default executor
        assert all(t.ident != loop_thread and t.name.startswith("lifeguard-apprise-push") for t in sender._threads)
    finally:
        await notifier.close()


async def test_a_refusal_is_retried_and_no_detail_echoes_the_url(service: JsonService) -> None:
    service.status = 500
    notifier = apprise_notifier(service.url())
    try:
        result = await notifier.send("evt_1", render_json(notification()))
    finally:
        await notifier.close()
    assert result.outcome == "retry" and result.detail.startswith("Apprise could not send: ")
    assert "500" in result.detail and PLANTED not in result.detail and "/notify" not in result.detail
    assert len(service.got) == 1  # one attempt: the outbox owns retries


async def test_no_answer_is_retried_without_the_url() -> None:
    port = free_port()
    notifier = apprise_notifier(f"json://user:{PLANTED}@127.0.0.1:{port}/x")
    try:
        result = await notifier.send("evt_1", render_json(notification()))
    finally:
        await notifier.close()
    assert result.outcome == "retry" and PLANTED not in result.detail and f"{port}/x" not in result.detail


async def test_a_body_that_is_not_a_message_is_dead() -> None:
    notifier = apprise_notifier("json://127.0.0.1:1/x")
    assert (await notifier.send("evt_1", b"not json")).outcome == "dead"
    await notifier.close()


def test_every_url_and_its_tokens_are_secrets() -> None:
    cfg = AppriseNotifierConfig(name="p", type="apprise",
                                urls=[f"json://u:{PLANTED}@127.0.0.1:1/x", "gotify://127.0.0.1/AbCdEfGhIjKlMnOp12"])
    found = secret_values(cfg)
    assert f"json://u:{PLANTED}@127.0.0.1:1/x" in found and PLANTED in found
    assert "AbCdEfGhIjKlMnOp12" in AppriseNotifier(cfg, lambda: None).private_values()  # type: ignore[arg-type, return-value]
    assert PLANTED not in repr(cfg)


def write_config(tmp_path: Path, notifier: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"agent": {"state_dir": str(tmp_path / "state")}, "checks": [],
                                    "notifiers": [notifier]}))
    return path


@pytest.mark.parametrize(
    ("urls", "error"),
    [
        ([], "notifiers[0].urls: must list at least one Apprise URL"),
        (["json://127.0.0.1/x", f"nonsense://{PLANTED}"],
         "notifiers[0].urls: URL 2 is not one Apprise understands (the value is not shown; "
         "see the Apprise wiki for each service's URL)"),
    ],
)
def test_bad_urls_are_config_errors_that_do_not_echo_them(tmp_path: Path, urls: list[str], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, {"name": "push", "type": "apprise", "urls": urls}))
    assert caught.value.errors == [error]


def test_without_the_library_the_config_says_how_to_install_it(tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    # A finder first in line that refuses `apprise`, as if it were not installed.
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoApprise:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'apprise' or name.startswith('apprise.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'apprise'\", name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoApprise())\n"
    )
    path = write_config(tmp_path, {"name": "push", "type": "apprise", "urls": ["json://127.0.0.1/x"]})
    env = dict(os.environ, PYTHONPATH=f"{hide}{os.pathsep}{ROOT}")
    done = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", "-c", str(path)],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[1:] == [
        "  notifiers[0].type: needs the Apprise library, which is not installed; pip install 'lifeguard[apprise]'"
    ]


async def test_notify_test_through_apprise_reaches_the_service(service: JsonService, tmp_path: Path) -> None:
    path = write_config(tmp_path, {"name": "push", "type": "apprise", "urls": [service.url()]})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "notify", "test", "push", "-c", str(path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert out.decode() == "push: delivered (sent to 1 service)\n"
    assert service.got[0]["body"]["title"].startswith("[TEST][SEV-4] Test message from Lifeguard")
    assert PLANTED not in out.decode() + err.decode()
