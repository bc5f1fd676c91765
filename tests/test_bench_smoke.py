"""The performance harness runs end to end at a small N, so that it never rots.

Correctness only, never speed: every target is checked, the failing ones open incidents that
reach the receiver, and the table and the JSON carry every figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_measures_every_figure_at_twenty_targets(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=100, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((tmp_path / "scale.json").read_text())
    assert set(report) >= {"date", "command", "machine", "settings", "runs", "summary", "slow", "targets_met"}
    assert set(report["machine"]) >= {"nproc", "cpu", "python", "targets"}

    [summary] = report["summary"]
    missing = sorted(key for key, value in summary.items() if value is None)
    assert summary["n"] == 20 and not missing, f"figures not measured: {missing}"
    assert summary["every_target_checked"] is True

    [run] = report["runs"]
    agent, loop = run["agent"], run["loop"]
    assert agent["side"]["checked"] == 20, agent["side"]
    assert loop["side"]["checked"] == 20, loop["side"]
    assert agent["checks"] > 0 and loop["checks"] > 0 and loop["own"]["runs"] > 0
    assert agent["alerts"]["opened"] == agent["alerts"]["failed"] == 3, agent["alerts"]


    [slow] = report["slow"]
    assert slow["n"] == 20 and slow["hanging"] == 4 and slow["every_target_checked"] is True
    assert slow["other_side_lag_p99"] is not None and slow["metrics_lag_p99"] is not None

    header = next(line for line in done.stdout.splitlines() if line.startswith("|  N "))
    for column in ("CPU-s/1k agent", "loop", "ratio", "RSS peak MB", "checks/s min", "cycle p99 s",
                   "lag p50/p99/max ms", "skipped", "detect med/max s", "deliver med ms", "DB B/result"):
        assert column in header, column
    assert "| 20 |" in done.stdout
    assert "other 16 lag p99" in done.stdout
    assert "no plot: it needs at least two N" in done.stdout
