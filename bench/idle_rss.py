"""Idle memory of the agent: RSS of `lifeguard run` after it settles, per config shape.

    .venv/bin/python bench/idle_rss.py [--settle 20]

Run it with a Python that has only the runtime dependencies (`python3 -m venv /tmp/rt &&
/tmp/rt/bin/pip install . && /tmp/rt/bin/python bench/idle_rss.py`): the test extras bring `rich`,
which structlog imports when it is there (+3.6 MB), so `.venv` overstates what users run.

Prints the median of 5 samples (1 s apart) after `--settle` seconds, for: the shipped
config.yaml; 100 HTTP checks; and a config with a container check (talks to the Engine API; Docker
itself need not be reachable). Targets: 45 MB without a container check, 55 MB with one.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, free_port, rss_kb


def measure(name: str, config: dict, settle: float) -> None:
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
            print(f"{name:<28} median RSS {statistics.median(samples) / 1024:6.1f} MB"
                  f"  (min {min(samples) / 1024:.1f}, max {max(samples) / 1024:.1f})")
        finally:
            proc.terminate()
            proc.wait(15)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settle", type=float, default=20.0)
    args = ap.parse_args()
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    port = free_port()
    shipped["agent"]["api"]["listen"] = f"127.0.0.1:{port}"
    for check in shipped["checks"]:
        check.update({k: v.replace("9810", str(port)) for k, v in check.items() if isinstance(v, str)})
        if check.get("port") == 9810:
            check["port"] = port
    measure("shipped config.yaml", shipped, args.settle)

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
