"""The ``host`` check: the figures of the host the agent runs on, against limits.

CPU (all cores, percent busy), the 1-minute load average, memory and swap in use, and for each
listed path its filesystem's space and inodes in use. Each ``max_*`` limit fails the check when
the figure is above it; each ``warn_*`` limit makes a passing result a warning. A figure is only
read when a limit asks for it.

CPU is measured between two runs of the check (the first run measures over a short window,
``agent.evidence.HostSampler``). psutil and ``statvfs`` read ``/proc`` and the filesystems (a
hung network mount blocks): the whole probe runs in a thread of the check's own
(``checks.blocking``), off the event loop.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any, ClassVar, Literal

from agent.config import CheckConfigBase
from agent.config.model import After, KeyedError, field
from agent.config.types import ConfigModel, NonEmptyStr, NonNegativeFloat, Percent, absolute, base_dir
from agent.evidence import HostSampler
from checks.base import Check, CheckContext, Outcome
from checks.blocking import OwnThread, StillRunning


def _warn_not_above(model: ConfigModel, pairs: tuple[tuple[str, str], ...]) -> None:
    for warn, limit in pairs:
        low, high = getattr(model, warn), getattr(model, limit)
        if low is not None and high is not None and low > high:
            raise KeyedError(warn, f"{low:g} is above {limit} {high:g} (a warning comes before the failure)")


def _relative_to_config(value: str) -> str:
    return str(absolute(value, base_dir()))


class DiskLimit(ConfigModel):
    """Limits on the filesystem that holds ``path``."""

    path: Annotated[NonEmptyStr, After(_relative_to_config)]
    max_percent: Percent | None = None
    warn_percent: Percent | None = None
    max_inodes_percent: Percent | None = None
    warn_inodes_percent: Percent | None = None

    def __post_init__(self) -> None:
        if all(getattr(self, key) is None for key in _DISK_LIMITS):
            raise ValueError(f"needs at least one of {', '.join(_DISK_LIMITS)}")
        _warn_not_above(self, (("warn_percent", "max_percent"), ("warn_inodes_percent", "max_inodes_percent")))


_DISK_LIMITS = ("max_percent", "warn_percent", "max_inodes_percent", "warn_inodes_percent")
_HOST_PAIRS = (
    ("warn_cpu_percent", "max_cpu_percent"),
    ("warn_load1", "max_load1"),
    ("warn_memory_percent", "max_memory_percent"),
    ("warn_swap_percent", "max_swap_percent"),
)


class HostCheckConfig(CheckConfigBase):
    """Limits on the host's CPU, load, memory, swap and disks."""

    type: Literal["host"]
    max_cpu_percent: Percent | None = None
    warn_cpu_percent: Percent | None = None
    max_load1: NonNegativeFloat | None = None
    warn_load1: NonNegativeFloat | None = None
    max_memory_percent: Percent | None = None
    warn_memory_percent: Percent | None = None
    max_swap_percent: Percent | None = None
    warn_swap_percent: Percent | None = None
    disk: list[DiskLimit] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.disk and all(getattr(self, key) is None for pair in _HOST_PAIRS for key in pair):
            raise ValueError("needs at least one limit (max_cpu_percent, max_load1, max_memory_percent, "
                             "max_swap_percent, disk, or their warn_*)")
        _warn_not_above(self, _HOST_PAIRS)


class HostCheck(Check[HostCheckConfig]):
    """Reads the figures its limits name and compares them."""

    type: ClassVar[str] = "host"
    config_model = HostCheckConfig
    needs = frozenset()

    def __init__(self, config: HostCheckConfig, context: CheckContext) -> None:
        super().__init__(config, context)
        self._cpu = HostSampler()  # this check's own CPU baseline, between its runs
        self._host = socket.gethostname()
        self._thread = OwnThread(config.name)  # statvfs on a hung mount blocks: this check's thread only

    @property
    def target(self) -> str:
        return self._host

    async def probe(self) -> Outcome:
        try:
            figures = await self._thread.call(self._read)
        except StillRunning as exc:
            return Outcome(False, str(exc))
        return judge(self.config, figures)

    def _read(self) -> dict[str, Any]:
        import psutil

        cfg = self.config
        figures: dict[str, Any] = {}
        if cfg.max_cpu_percent is not None or cfg.warn_cpu_percent is not None:
            figures["cpu_percent"] = self._cpu.cpu_percent()
        if cfg.max_load1 is not None or cfg.warn_load1 is not None:
            figures["load1"] = round(os.getloadavg()[0], 2)
        if cfg.max_memory_percent is not None or cfg.warn_memory_percent is not None:
            figures["memory_percent"] = psutil.virtual_memory().percent
        if cfg.max_swap_percent is not None or cfg.warn_swap_percent is not None:
            figures["swap_percent"] = psutil.swap_memory().percent
        if cfg.disk:
            figures["disk"] = [_disk(limit.path) for limit in cfg.disk]
        return figures


def _disk(path: str) -> dict[str, Any]:
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return {"path": path, "error": exc.strerror or str(exc)}
    # As df counts: used against what a user may use (root's reserve left out).
    used = st.f_blocks - st.f_bfree
    usable = used + st.f_bavail
    inodes_used = st.f_files - st.f_ffree
    return {
        "path": path,
        "percent": round(100.0 * used / usable, 1) if usable > 0 else 0.0,
        # Some filesystems (btrfs, overlay on it) report no inode figures at all.
        "inodes_percent": round(100.0 * inodes_used / st.f_files, 1) if st.f_files > 0 else None,
    }


_NAMES = {
    "cpu_percent": ("CPU", "%"),
    "load1": ("load1", ""),
    "memory_percent": ("memory", "%"),
    "swap_percent": ("swap", "%"),
}


def judge(cfg: HostCheckConfig, figures: dict[str, Any]) -> Outcome:
    """The verdict on the figures read: pure, so the rules are tested without a host to strain."""
    failing: list[str] = []
    warning: list[str] = []
    shown: list[str] = []
    for key, (label, unit) in _NAMES.items():
        if key not in figures:
            continue
        value = figures[key]
        text = f"{label} {value:g}{unit}"
        shown.append(text)
        high, low = getattr(cfg, f"max_{key}"), getattr(cfg, f"warn_{key}")
        if high is not None and value > high:
            failing.append(f"{text} (max {high:g}{unit})")
        elif low is not None and value > low:
            warning.append(f"{text} (warn {low:g}{unit})")
    for limit, disk in zip(cfg.disk, figures.get("disk", []), strict=False):
        if "error" in disk:
            failing.append(f"disk {disk['path']}: {disk['error']}")
            continue
        for key, name in (("percent", "disk"), ("inodes_percent", "inodes")):
            value = disk[key]
            high, low = getattr(limit, f"max_{key}"), getattr(limit, f"warn_{key}")
            if value is None or (high is None and low is None):
                continue
            text = f"{name} {disk['path']} {value:g}%"
            shown.append(text)
            if high is not None and value > high:
                failing.append(f"{text} (max {high:g}%)")
            elif low is not None and value > low:
                warning.append(f"{text} (warn {low:g}%)")
    details = {"figures": figures}
    if failing:
        return Outcome(False, "; ".join(failing), details)
    if warning:
        return Outcome(True, "; ".join(warning), details, warning=True)
    return Outcome(True, ", ".join(shown) or "no figures to judge", details)
