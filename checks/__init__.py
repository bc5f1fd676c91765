"""Check types: one module each, registered here and nowhere else.

The config reads this registry when it loads a file: an entry's ``config_model`` validates the
checks of its type, so adding a type touches its module, its entry here and its test.
"""

from agent.config import CheckConfigBase
from checks.base import Check, CheckContext, CheckResult, Outcome
from checks.command import CommandCheck
from checks.container import ContainerCheck
from checks.host import HostCheck
from checks.http import HttpCheck
from checks.process import ProcessCheck
from checks.tcp import TcpCheck
from checks.tls import TlsCheck

CHECK_TYPES: dict[str, type[Check[CheckConfigBase]]] = {
    "http": HttpCheck,
    "tcp": TcpCheck,
    "container": ContainerCheck,
    "tls": TlsCheck,
    "process": ProcessCheck,
    "host": HostCheck,
    "command": CommandCheck,
}


def build_check(config: CheckConfigBase, context: CheckContext) -> Check[CheckConfigBase]:
    return CHECK_TYPES[config.type](config, context)


__all__ = ["CHECK_TYPES", "Check", "CheckContext", "CheckResult", "Outcome", "build_check"]
