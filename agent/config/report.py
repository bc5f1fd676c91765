"""``report:`` in the config: the targets of the practice the incident report measures itself against."""

from __future__ import annotations

from typing import Annotated

from agent.config.model import After, field
from agent.config.types import ConfigModel, PositiveDuration, Severity
from agent.durations import format_duration

__all__ = ["DEFAULT_TARGETS", "ReportConfig", "ReportTarget"]


class ReportTarget(ConfigModel):
    """One severity's targets: mean time to acknowledge, to resolve, to detect (each optional)."""

    severity: Severity
    mtta: PositiveDuration | None = None
    mttr: PositiveDuration | None = None
    mttd: PositiveDuration | None = None

    def __post_init__(self) -> None:
        if self.mtta is None and self.mttr is None and self.mttd is None:
            raise ValueError("give at least one of mtta, mttr, mttd")

    def goals(self) -> list[tuple[str, float]]:
        """(measure, seconds) of every target it sets, in the order mtta, mttr, mttd."""
        found = [("mtta", self.mtta), ("mttr", self.mttr), ("mttd", self.mttd)]
        return [(measure, limit) for measure, limit in found if limit is not None]

    def name(self, measure: str, limit: float) -> str:
        from agent.incidents import sev_label

        return f"{measure.upper()} < {format_duration(limit)} for {sev_label(self.severity)}"


DEFAULT_TARGETS: list[ReportTarget] = [
    ReportTarget.model_validate({"severity": "critical", "mtta": "5m", "mttr": "1h"}),
    ReportTarget.model_validate({"severity": "high", "mtta": "15m", "mttr": "4h"}),
]
"""The practice's targets: MTTA < 5 min and MTTR < 1 h for SEV-1, MTTA < 15 min and MTTR < 4 h for SEV-2."""


def _one_per_severity(value: list[ReportTarget]) -> list[ReportTarget]:
    seen: dict[str, int] = {}
    for i, target in enumerate(value):
        if target.severity in seen:
            raise ValueError(f"severity {target.severity} twice (targets[{seen[target.severity]}] and [{i}])")
        seen[target.severity] = i
    return value


class ReportConfig(ConfigModel):
    """``report:``: ``targets`` replaces the shipped list as a whole; one entry per severity."""

    targets: Annotated[list[ReportTarget], After(_one_per_severity)] = field(
        default_factory=lambda: list(DEFAULT_TARGETS)
    )
