"""Check types: one module each, registered here and nowhere else."""

from typing import Any

from checks.base import Check, CheckContext, CheckResult, Outcome
from checks.container import ContainerCheck
from checks.http import HttpCheck
from checks.tcp import TcpCheck

CHECK_TYPES: dict[str, type[Check]] = {
    "http": HttpCheck,
    "tcp": TcpCheck,
    "container": ContainerCheck,
}


def build_check(config: Any, context: CheckContext) -> Check:
    return CHECK_TYPES[config.type](config, context)


__all__ = ["CHECK_TYPES", "Check", "CheckContext", "CheckResult", "Outcome", "build_check"]
