"""Idle memory of the agent: RSS of `lifeguard run` after it settles, per config shape.

    .venv/bin/python bench/idle_rss.py [--settle 20]

Run it with a Python that has only the runtime dependencies (`python3 -m venv /tmp/rt &&
/tmp/rt/bin/pip install . && /tmp/rt/bin/python bench/idle_rss.py`): the test extras bring `rich`,
which structlog imports when it is there (+3.6 MB), so `.venv` overstates what users run.

Prints the median of 5 samples (1 s apart) after `--settle` seconds, for: the shipped
config.yaml; the issue's idle case, 50 TCP checks at 10 s (also its CPU over `--cpu-window`
seconds, as a share of one core); 100 HTTP checks at 1 s; and a config with a container check
(talks to the Engine API; Docker itself need not be reachable). Targets: 45 MB without a container
check, 55 MB with one; idle CPU under 0.5 % of a core.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from common import ROOT, cpu_seconds, free_port, rss_kb


def measure(name: str, config: dict, settle: float, cpu_window: float = 0.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )
        try:
            time.sleep(settle)
            if proc.poll() is not None:
                raise SystemExit(f"{name}: agent exited with {proc.returncode}")
            samples = []
            for _ in range(5):
                samples.append(rss_kb(proc.pid))
                time.sleep(1)
            cpu = ""
            if cpu_window:
                before, started = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(cpu_window)
                share = (cpu_seconds(proc.pid) - before) / (time.monotonic() - started)
                cpu = f"  CPU {100 * share:.2f} % of a core over {cpu_window:.0f} s"
            print(f"{name:<28} median RSS {statistics.median(samples) / 1024:6.1f} MB"
                  f"  (min {min(samples) / 1024:.1f}, max {max(samples) / 1024:.1f}){cpu}")
        finally:
            proc.terminate()
            proc.wait(15)


def listener() -> int:
    """A port on 127.0.0.1 that accepts every connection and closes it, from a thread of this process."""
    server = socket.create_server(("127.0.0.1", 0), backlog=128)

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    port: int = server.getsockname()[1]
    return port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--cpu-window", type=float, default=60.0, help="seconds of CPU measured for the idle case")
    args = ap.parse_args()
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    port = free_port()
    shipped["agent"]["api"]["listen"] = f"127.0.0.1:{port}"
    for check in shipped["checks"]:
        check.update({k: v.replace("9810", str(port)) for k, v in check.items() if isinstance(v, str)})
        if check.get("port") == 9810:
            check["port"] = port
    measure("shipped config.yaml", shipped, args.settle)

    target = listener()  # the checks' target is another process's port, not the agent's own API
    idle = dict(shipped, checks=[
        {"name": f"port-{i}", "type": "tcp", "host": "127.0.0.1", "port": target, "interval": "10s"}
        for i in range(50)
    ])
    idle["agent"] = dict(shipped["agent"], api={"listen": f"127.0.0.1:{port}"})
    measure("50 tcp checks at 10s", idle, args.settle, args.cpu_window)

    many = dict(shipped, checks=[
        {"name": f"web-{i}", "type": "http", "url": f"http://127.0.0.1:{port}/health", "interval": "1s"}
        for i in range(100)
    ])
    many["agent"] = dict(shipped["agent"], api={"listen": f"127.0.0.1:{free_port()}"})
    measure("100 http checks at 1s", many, args.settle)

    docker = dict(shipped, checks=[{"name": "worker", "type": "container", "container": "worker"}])
    docker["agent"] = dict(shipped["agent"], api={"listen": f"127.0.0.1:{free_port()}"})
    docker["docker"] = {"url": f"unix://{tempfile.gettempdir()}/lifeguard-bench-no-docker.sock"}
    measure("container check", docker, args.settle)


if __name__ == "__main__":
    main()
