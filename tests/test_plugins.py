"""What a loaded config asks of the agent: its secrets and its needs, from the plugins' declarations."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import pytest

import checks
from agent.config import CheckConfigBase, Config, load_config
from agent.config.types import Secret
from agent.plugins import needs, secret_values
from checks.base import Check, Outcome

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def load(folder: Path, text: str) -> Config:
    path = folder / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, {})


def test_secret_values_are_the_token_the_webhook_secret_and_header_values(tmp_path: Path) -> None:
    config = load(tmp_path, f"""
        agent: {{api: {{listen: "0.0.0.0:9810", token: tok3n}}}}
        checks:
          - {{name: a, type: http, url: "http://h/", headers: {{Authorization: Bearer b3arer}}}}
        notifiers:
          - {{name: ops, type: webhook, url: "https://h/x", secret: {SECRET}, headers: {{X-Key: k3y}}}}
    """)
    assert sorted(secret_values(config)) == sorted(["tok3n", "Bearer b3arer", SECRET, "k3y"])


def test_secret_values_leave_out_what_is_not_set(tmp_path: Path) -> None:
    config = load(tmp_path, """
        agent: {api: {token: ""}}
        checks: [{name: a, type: http, url: "http://h/"}]
        notifiers: [{name: ops, type: webhook, url: "https://h/x"}, {name: log, type: file}]
    """)
    assert secret_values(config) == []


class VaultCheckConfig(CheckConfigBase):
    type: Literal["vault"]
    role_id: str
    secret_id: Annotated[str, Secret]


class VaultCheck(Check[VaultCheckConfig]):
    """A check type registered by a test, with a secret of its own and a need."""

    type: ClassVar[str] = "vault"
    config_model = VaultCheckConfig
    needs = frozenset({"http"})

    @property
    def target(self) -> str:
        return "vault"

    async def probe(self) -> Outcome:
        return Outcome(True, "sealed")


def test_a_plugins_own_secret_fields_are_collected_and_its_needs_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(checks.CHECK_TYPES, "vault", VaultCheck)
    config = load(tmp_path, "checks: [{name: v, type: vault, role_id: public-role, secret_id: s3cret-id}]")
    assert secret_values(config) == ["s3cret-id"]
    assert needs(config) == {"http"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checks: []", set()),
        ("checks: [{name: a, type: tcp, host: h, port: 1}]\nnotifiers: [{name: f, type: file}]", set()),
        ("checks: [{name: a, type: http, url: 'http://h/'}]", {"http"}),
        ("notifiers: [{name: n, type: webhook, url: 'http://h/'}]", {"http"}),
        ("checks: [{name: a, type: container, container: c}]", {"docker"}),
        ("checks: [{name: a, type: tcp, host: h, port: 1, container: c}]", {"docker"}),
        ("checks: [{name: a, type: tcp, host: h, port: 1, heal: {restart_container: c}}]", {"docker"}),
        ("checks: [{name: a, type: http, url: 'http://h/', container: c, heal: {}}]", {"docker", "http"}),
    ],
)
def test_needs_come_from_check_types_notifier_types_heal_kinds_and_containers(
    tmp_path: Path, text: str, expected: set[str]
) -> None:
    config = load(tmp_path, text)
    assert needs(config) == expected
