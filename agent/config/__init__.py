"""Load and validate ``config.yaml``: the one place where the product's config contract lives.

Loading reads the YAML, expands ``${VAR}`` references in string values, then validates each
section (and each check and notifier) separately with pydantic, so that one run reports every
mistake in the file, each as ``path: message`` like a compiler would. What comes out is frozen
and fully resolved: inherited ``defaults:``, built-in defaults, clamped timeouts and absolute
paths are already applied, so no consumer ever looks at ``defaults`` or the file again.

The keys a check or notifier type adds are declared by the plugin itself, next to its code
(``checks/http.py`` has ``HttpCheckConfig``), on the bases exported here; the value types they
are built from are in ``agent.config.types``.
"""

from agent.config.errors import ConfigError
from agent.config.loading import find_config, load_config
from agent.config.sections import (
    AgentConfig,
    ApiConfig,
    CheckConfigBase,
    Config,
    DefaultsConfig,
    DeliveryConfig,
    DiscoverConfig,
    DockerConfig,
    HealConfig,
    NotifierConfigBase,
    RetentionConfig,
    RouteConfig,
    RouteMatch,
)
from agent.config.types import SEVERITIES, ConfigModel
from agent.durations import format_duration, parse_duration

__all__ = [
    "SEVERITIES",
    "AgentConfig",
    "ApiConfig",
    "CheckConfigBase",
    "Config",
    "ConfigError",
    "ConfigModel",
    "DefaultsConfig",
    "DeliveryConfig",
    "DiscoverConfig",
    "DockerConfig",
    "HealConfig",
    "NotifierConfigBase",
    "RetentionConfig",
    "RouteConfig",
    "RouteMatch",
    "find_config",
    "format_duration",
    "load_config",
    "parse_duration",
]
