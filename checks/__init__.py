"""Check types: one module each, registered here and nowhere else.

The config reads this registry when it loads a file: an entry's ``config_model`` validates the
checks of its type, so adding a type touches its module, its entry here and its test.
"""

from agent.config import CheckConfigBase
from agent.registry import LazyRegistry
from checks.base import Check, CheckContext, CheckResult, Outcome

# Each type's module is imported when a config uses it (or a test asks for it), not at start.
CHECK_TYPES: LazyRegistry[type[Check[CheckConfigBase]]] = LazyRegistry({
    "http": "checks.http:HttpCheck",
    "tcp": "checks.tcp:TcpCheck",
    "container": "checks.container:ContainerCheck",
    "tls": "checks.tls:TlsCheck",
    "process": "checks.process:ProcessCheck",
    "host": "checks.host:HostCheck",
    "command": "checks.command:CommandCheck",
})


def build_check(config: CheckConfigBase, context: CheckContext) -> Check[CheckConfigBase]:
    return CHECK_TYPES[config.type](config, context)


__all__ = ["CHECK_TYPES", "Check", "CheckContext", "CheckResult", "Outcome", "build_check"]
