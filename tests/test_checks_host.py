"""The host check against the real host, with limits no host can miss, and its verdict on given figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, load_config
from checks import CheckContext, build_check
from checks.host import HostCheck, HostCheckConfig, judge


def host_config(**keys: Any) -> HostCheckConfig:
    return HostCheckConfig.model_validate({"name": "host", "type": "host", **keys})


def host_check(**keys: Any) -> HostCheck:
    check = build_check(host_config(**keys), CheckContext())
    assert isinstance(check, HostCheck)
    return check


async def test_memory_above_a_tiny_limit_fails() -> None:
    result = await host_check(max_memory_percent=0.0001).run()
    assert not result.ok
    assert result.message.startswith("memory ") and result.message.endswith("% (max 0.0001%)")
    assert 0 < result.details["figures"]["memory_percent"] <= 100


async def test_every_figure_within_the_widest_limits_passes(tmp_path: Path) -> None:
    result = await host_check(
        max_cpu_percent=100, max_load1=1e9, max_memory_percent=100, max_swap_percent=100,
        disk=[{"path": "/", "max_percent": 100, "max_inodes_percent": 100}, {"path": str(tmp_path), "max_percent": 100}],
    ).run()
    assert result.ok and not result.warning, result.message
    figures = result.details["figures"]
    assert set(figures) == {"cpu_percent", "load1", "memory_percent", "swap_percent", "disk"}
    assert [d["path"] for d in figures["disk"]] == ["/", str(tmp_path)]
    assert result.message.startswith("CPU ") and f"disk {tmp_path} " in result.message


async def test_a_warn_limit_passes_with_a_warning() -> None:
    result = await host_check(warn_memory_percent=0.0001, max_memory_percent=100).run()
    assert result.ok and result.warning and result.status == "warning"
    assert result.message.endswith("(warn 0.0001%)")


async def test_disk_space_above_its_limit_fails_and_a_missing_path_fails(tmp_path: Path) -> None:
    result = await host_check(disk=[{"path": str(tmp_path), "max_percent": 0}]).run()
    assert not result.ok and result.message.startswith(f"disk {tmp_path} ") and result.message.endswith("(max 0%)")

    gone = tmp_path / "gone"
    missing = await host_check(disk=[{"path": str(gone), "max_percent": 90}]).run()
    assert not missing.ok and missing.message == f"disk {gone}: No such file or directory"


async def test_cpu_is_read_on_the_first_run_and_between_runs() -> None:
    check = host_check(max_cpu_percent=100)
    for _ in range(2):
        result = await check.run()
        assert result.ok and 0 <= result.details["figures"]["cpu_percent"] <= 100


def test_failures_come_before_warnings_and_each_is_named() -> None:
    cfg = host_config(max_load1=4, warn_memory_percent=80, max_memory_percent=95,
                      disk=[{"path": "/", "warn_percent": 80, "max_inodes_percent": 90}])
    figures = {"load1": 6.5, "memory_percent": 85.0,
               "disk": [{"path": "/", "percent": 70.0, "inodes_percent": 91.0}]}
    outcome = judge(cfg, figures)
    assert not outcome.ok and outcome.message == "load1 6.5 (max 4); inodes / 91% (max 90%)"

    figures = {"load1": 1.0, "memory_percent": 85.0, "disk": [{"path": "/", "percent": 81.0, "inodes_percent": None}]}
    outcome = judge(cfg, figures)
    assert outcome.ok and outcome.warning and outcome.message == "memory 85% (warn 80%); disk / 81% (warn 80%)"

    outcome = judge(cfg, {"load1": 1.0, "memory_percent": 10.0, "disk": [{"path": "/", "percent": 5.0, "inodes_percent": 2.0}]})
    assert outcome.ok and not outcome.warning and outcome.message == "load1 1, memory 10%, disk / 5%, inodes / 2%"


# -- config ------------------------------------------------------------------------------------


def errors(folder: Path, check: str) -> list[str]:
    path = folder / "config.yaml"
    path.write_text(f"checks: [{check}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return caught.value.errors


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("{name: h, type: host, max_memory_percent: 150}", "checks[0].max_memory_percent: must be between 0 and 100, got 150"),
        ("{name: h, type: host, max_cpu_percent: -1}", "checks[0].max_cpu_percent: must be between 0 and 100, got -1"),
        ("{name: h, type: host, disk: [{path: /, max_percent: 101}]}",
         "checks[0].disk[0].max_percent: must be between 0 and 100, got 101"),
        ("{name: h, type: host, disk: [{path: /, max_inodes_percent: .nan}]}",
         "checks[0].disk[0].max_inodes_percent: expected a finite number"),
        ("{name: h, type: host, disk: [{path: /}]}",
         "checks[0].disk[0]: needs at least one of max_percent, warn_percent, max_inodes_percent, warn_inodes_percent"),
        ("{name: h, type: host, disk: [{max_percent: 90}]}", "checks[0].disk[0].path: required"),
        ("{name: h, type: host}", "checks[0]: needs at least one limit (max_cpu_percent, max_load1, max_memory_percent, "
                                  "max_swap_percent, disk, or their warn_*)"),
        ("{name: h, type: host, max_swap_percent: true}", "checks[0].max_swap_percent: expected a number, not true/false"),
        ("{name: h, type: host, max_load1: 2, warn_load1: 3}",
         "checks[0].warn_load1: 3 is above max_load1 2 (a warning comes before the failure)"),
        ("{name: h, type: host, max_memory_percent: 90, max_rss: 1GB}",
         "checks[0].max_rss: unknown key for a host check (only process checks have it)"),
    ],
)
def test_config_mistakes_are_located(tmp_path: Path, check: str, expected: str) -> None:
    assert errors(tmp_path, check) == [expected]


def test_a_relative_disk_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("checks: [{name: h, type: host, disk: [{path: data, max_percent: 90}, {path: /, max_percent: 90}]}]\n")
    cfg = load_config(path, {}).check("h")
    assert isinstance(cfg, HostCheckConfig)
    assert [d.path for d in cfg.disk] == [str(tmp_path / "data"), "/"]
