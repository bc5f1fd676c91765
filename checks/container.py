"""The container check: is a Docker container running, and does Docker consider it healthy?

The probe asks the engine (``context.docker``) for the container's state and judges it with a
pure function, so the rules — running passes, ``unhealthy`` fails, anything else fails with the
reason an operator would look for — are tested without Docker. Only state fields leave this
module: the container's environment (where secrets live) is never copied into details, and the
values of its secret-named variables are masked in whatever the container said (health-probe
output, the engine's error), since the message becomes an incident's title and timeline.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from agent.config import CheckConfigBase
from agent.config.types import NonEmptyStr
from agent.dockerclient import ContainerNotFound, DockerError
from agent.redact import redact_text, secret_env_values
from checks.base import Check, Outcome

_PROBE_OUTPUT_LIMIT = 200  # characters of the last health probe's output kept in the message


class ContainerCheckConfig(CheckConfigBase):
    """A container is running (and healthy, if it has a health check)."""

    type: Literal["container"]
    container: NonEmptyStr


class ContainerCheck(Check[ContainerCheckConfig]):
    """Passes while the container is running and its Docker health is not ``unhealthy``."""

    type: ClassVar[str] = "container"
    config_model = ContainerCheckConfig
    needs = frozenset({"docker"})

    @property
    def target(self) -> str:
        container: str = self.config.container
        return container

    async def probe(self) -> Outcome:
        engine = self.context.docker
        if engine is None:
            return Outcome(False, "no Docker engine configured")
        try:
            attrs = await engine.inspect(self.target)
        except ContainerNotFound:
            return Outcome(False, f"container {self.target!r} not found")
        except DockerError as exc:
            return Outcome(False, str(exc))
        return container_outcome(self.target, attrs)


def container_outcome(name: str, attrs: dict[str, Any]) -> Outcome:
    """Judge ``docker inspect`` attributes: the check's rules, without I/O."""
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    status = state.get("Status") or "unknown"
    summary = {
        "status": status,
        "running": bool(state.get("Running")),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "restart_count": attrs.get("RestartCount", 0),
        "health": health.get("Status"),
    }
    details = {"state": summary}
    label = f"container {name!r}"
    secrets = tuple(secret_env_values((attrs.get("Config") or {}).get("Env")))

    # Status, not Running: a paused container still reports Running=true.
    if status == "running":
        if summary["health"] == "unhealthy":
            return Outcome(False, f"{label} is unhealthy: {_last_probe(health, secrets)}", details)
        suffix = f" ({summary['health']})" if summary["health"] else ""
        return Outcome(True, f"{label} is running{suffix}", details)
    if status in ("exited", "dead"):
        reason = f"exit code {summary['exit_code']}"
        if summary["oom_killed"]:
            reason += ", OOM-killed"
        error = (state.get("Error") or "").strip()
        if error:
            reason += f", {_said(error, secrets)}"
        return Outcome(False, f"{label} is {status} ({reason})", details)
    return Outcome(False, f"{label} is {status}", details)


def _last_probe(health: dict[str, Any], secrets: tuple[str, ...]) -> str:
    log = health.get("Log") or []
    if not log:
        return f"failing streak {health.get('FailingStreak', 0)}"
    last = log[-1]
    output = _said(last.get("Output") or "", secrets)
    return output or f"health probe exited with code {last.get('ExitCode')}"


def _said(text: str, secrets: tuple[str, ...]) -> str:
    """What the container said, secrets masked before the cut (a cut secret is unrecognisable)."""
    return _trim(redact_text(text, secrets))


def _trim(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= _PROBE_OUTPUT_LIMIT:
        return flat
    return flat[: _PROBE_OUTPUT_LIMIT - 1] + "…"
