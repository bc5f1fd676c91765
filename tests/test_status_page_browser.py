"""The status page in a real browser: headless Chromium (Debian's ``chromium``) loads ``/status`` from
the API served on 127.0.0.1 for incidents run by the real engine on a real store, with JavaScript
switched off and a phone-sized window. The test reads the page's visible text (``innerText``)
through the DevTools protocol and saves a screenshot under its tmp dir (``status-page.png``).
Without Chromium it skips, loudly; under ``CI=true`` it fails instead (scripts/test.sh installs it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.api import ApiRunner, create_app
from agent.engine import Engine
from agent.store import Store
from tests.fixtures_agent import free_port
from tests.test_api import Board, Desk, Facts, Reader
from tests.test_status_page import INTERNAL, T0, StoreStatus, run_incidents

PHONE = (412, 915)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
    f"--window-size={PHONE[0]},{PHONE[1]}",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium; scripts/test.sh does it): status page NOT checked"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class DevTools:
    """A minimal DevTools protocol client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.ids = ws, itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), 30)
            if message.get("id") == call_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))
            self.events.append(message)

    async def wait_for(self, event: str) -> None:
        if any(e.get("method") == event for e in self.events):
            return
        while (await asyncio.wait_for(self.ws.receive_json(), 30)).get("method") != event:
            pass

    async def evaluate(self, expression: str) -> Any:
        return (await self.call("Runtime.evaluate", expression=expression, returnByValue=True))["result"]["value"]


@contextlib.asynccontextmanager
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    proc = await asyncio.create_subprocess_exec(
        chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode(errors="replace")
            assert line, "chromium exited before it listened"
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(found.group(1)) if found else None
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield DevTools(ws)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.fixture
async def status_url(running_store: Store) -> AsyncIterator[str]:
    engine = Engine(running_store, [], notify_all=["ops"], clock=lambda: T0)
    await running_store.run(running_store.results.add, [("checkout-http", T0 - 10, True, 0.01, "ok")])
    await run_incidents(engine)
    app = create_app(agent_name="web-01", token="t0ken", health=Facts(), board=Board(), incidents=Reader(),
                     deliveries=Desk(), status=StoreStatus(running_store), clock=lambda: T0)
    runner = ApiRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/status"
    await runner.cleanup()


async def test_the_status_page_reads_right_on_a_phone_without_javascript(status_url: str, tmp_path: Path) -> None:
    async with browser(tmp_path) as page:
        await page.call("Emulation.setScriptExecutionDisabled", value=True)
        await page.call("Page.enable")
        await page.call("Page.navigate", url=status_url)
        await page.wait_for("Page.loadEventFired")
        await page.call("Emulation.setScriptExecutionDisabled", value=False)  # to read the page back
        text = await page.evaluate("document.body.innerText")
        widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        bars = await page.evaluate("document.querySelectorAll('.bars span').length")
        scripts = await page.evaluate("document.scripts.length")
        shot = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    screenshot = tmp_path / "status-page.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    print(f"status page screenshot: {screenshot}")
    assert screenshot.stat().st_size > 5000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert "Acme status" in text
    assert "Degraded" in text  # the overall state: a SEV-2 is open
    assert "Checkout - Checkout slow" in text  # the open incident, in the public format
    assert "Checkout" in text and "Login" in text  # the services
    assert "A slow database query; a fix is rolling out" in text  # the latest public update
    assert "We are looking into slow checkouts" in text  # a previous one
    assert "Login - Login errors" in text  # recently resolved
    assert "Scheduled maintenance" in text and "checkout-database-upgrade" in text  # a window of the config
    assert "2026-11-19 11:06 UTC" in text and "2026-11-19 13:06 UTC" in text  # from, until
    assert INTERNAL not in text and "10.0.0.7" not in text  # no internal comment, no host
    assert bars == 2 * 90 and scripts == 0
    assert widths[0] <= widths[1], f"the page scrolls sideways on a phone: {widths}"
