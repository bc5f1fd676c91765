"""N loopback HTTP targets that count their hits: one nginx if it is installed, else an aiohttp farm.

Each target is a path, ``/t/<i>`` for the agent's checks and ``/loop/<i>`` for the reference loop,
so the targets' side knows when each one was requested. Both kinds answer ``200 ok``; on cue a
target fails (``500``) or hangs (never answers; the check times out). Hits are read back as the
epoch times each target was requested, per target, within a window.

nginx: one worker, an access log of ``$msec $request_uri $status`` (a write per request: one
syscall, and read back at once), cues as files under its root (``fail/t/<i>``, ``slow/t/<i>``) tested per request, a
hanging target proxied to a local server that reads and never answers. ``keepalive_requests`` is
lifted so that nginx does not close the few busy keep-alive connections every 1,000 requests.
The farm: one aiohttp server in this process, which records the times in memory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Protocol

from aiohttp import web
from common import free_port, pin, wait_for_port

Hits = dict[int, list[float]]
"""Target number -> epoch times it was requested (sorted)."""


class Targets(Protocol):
    kind: str
    port: int

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def cue(self, what: str, ids: list[int], on: bool) -> None: ...
    async def hits(self, prefix: str, t0: float, t1: float) -> Hits: ...


def url(targets: Targets, prefix: str, i: int) -> str:
    return f"http://127.0.0.1:{targets.port}/{prefix}/{i}"


class HangServer:
    """Accepts connections and never answers; closes its side when the other does."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=4096)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            await self._server.wait_closed()


NGINX_CONF = """\
worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections {connections}; }}
http {{
    log_format bench '$msec $request_uri $status';
    access_log {dir}/access.log bench;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/root;
        error_page 418 = @hang;
        location /t/ {{
            if (-f $document_root/fail$uri) {{ return 500 "failing on cue\\n"; }}
            if (-f $document_root/slow$uri) {{ return 418; }}
            return 200 "ok\\n";
        }}
        location /loop/ {{ return 200 "ok\\n"; }}
        location @hang {{
            proxy_pass http://127.0.0.1:{hang_port};
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


class NginxTargets:
    kind = "nginx"

    def __init__(self, nginx: str, cpu: int | None, nofile: int) -> None:
        self.nginx = nginx
        self.cpu = cpu
        self.nofile = nofile
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lifeguard-bench-nginx-"))
        self.hang = HangServer()
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._pending = b""

    async def start(self) -> None:
        await self.hang.start()
        for sub in ("root/fail/t", "root/slow/t"):
            (self.dir / sub).mkdir(parents=True)
        # The worker runs as an unprivileged user when started as root: it must see the cue files.
        for path in (self.dir, self.dir / "root", self.dir / "root/fail", self.dir / "root/slow",
                     self.dir / "root/fail/t", self.dir / "root/slow/t"):
            path.chmod(0o755)
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir, port=self.port, hang_port=self.hang.port,
                                          nofile=self.nofile, connections=max(1024, self.nofile - 100)))
        self.proc = subprocess.Popen([self.nginx, "-p", str(self.dir), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr.log", "wb"))
        pin(self.proc.pid, self.cpu)  # the worker it forks inherits it
        await asyncio.to_thread(wait_for_port, self.port, 15, self.proc)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        await self.hang.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cue(self, what: str, ids: list[int], on: bool) -> None:
        folder = self.dir / "root" / what / "t"
        for i in ids:
            path = folder / str(i)
            if on:
                path.touch()
                path.chmod(0o644)
            else:
                path.unlink(missing_ok=True)

    async def hits(self, prefix: str, t0: float, t1: float) -> Hits:
        await asyncio.sleep(max(0.0, t1 + 0.2 - time.time()))
        return await asyncio.to_thread(self._read, prefix, t0, t1)

    def _read(self, prefix: str, t0: float, t1: float) -> Hits:
        with open(self.dir / "access.log", "rb") as f:
            f.seek(self._offset)
            data = self._pending + f.read()
            self._offset = f.tell()
        cut = data.rfind(b"\n") + 1
        data, self._pending = data[:cut], data[cut:]
        out: Hits = defaultdict(list)
        want = f"/{prefix}/".encode()
        for line in data.split(b"\n"):
            parts = line.split(b" ")
            if len(parts) != 3 or not parts[1].startswith(want):
                continue
            at = float(parts[0])
            if t0 <= at <= t1:
                out[int(parts[1][len(want):])].append(at)
        for times in out.values():
            times.sort()
        return dict(out)


class FarmTargets:
    """The same targets from one aiohttp server in this process (when nginx is not installed)."""

    kind = "aiohttp"

    def __init__(self) -> None:
        self.port = free_port()
        self._times: dict[str, Hits] = {"t": defaultdict(list), "loop": defaultdict(list)}
        self._cues: dict[str, set[int]] = {"fail": set(), "slow": set()}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _target(self, request: web.Request) -> web.StreamResponse:
        prefix, i = request.match_info["prefix"], int(request.match_info["i"])
        self._times[prefix][i].append(time.time())
        if prefix == "t" and i in self._cues["fail"]:
            return web.Response(status=500, text="failing on cue\n")
        if prefix == "t" and i in self._cues["slow"]:
            await self._release.wait()
        return web.Response(text="ok\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(r"/{prefix:t|loop}/{i:\d+}", self._target)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=4096).start()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def cue(self, what: str, ids: list[int], on: bool) -> None:
        (self._cues[what].update if on else self._cues[what].difference_update)(ids)

    async def hits(self, prefix: str, t0: float, t1: float) -> Hits:
        await asyncio.sleep(max(0.0, t1 - time.time()))
        seen, self._times[prefix] = self._times[prefix], defaultdict(list)
        return {i: [t for t in times if t0 <= t <= t1] for i, times in seen.items()}


def make_targets(choice: str, cpu: int | None, nofile: int) -> Targets:
    """``auto``: nginx when it is installed, else the aiohttp farm."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if choice == "nginx" and nginx is None:
        raise SystemExit("--targets nginx: nginx is not installed (as root: apt-get install -y nginx-light)")
    if choice in ("nginx", "auto") and nginx is not None:
        return NginxTargets(nginx, cpu, nofile)
    return FarmTargets()
