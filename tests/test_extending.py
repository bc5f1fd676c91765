"""The recipe in the README, proven: a check type and a notifier built from the public interfaces
alone, registered here and nowhere else, configured in YAML and run through the engine and the
outbox with a real SQLite file. If adding one ever needs an edit elsewhere, this test says so."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import pytest

from actions.notifiers import NOTIFIER_TYPES, Delivery, Notifier
from agent.config import CheckConfigBase, NotifierConfigBase, load_config
from agent.config.types import NonEmptyStr, Secret
from agent.engine import Engine
from agent.events import Notification
from agent.outbox import DeliveryPolicy, Outbox
from agent.plugins import needs, secret_values
from agent.store import Store
from checks import CHECK_TYPES, Check, CheckContext, Outcome, build_check
from tests.fixtures_agent import poll


# 1. A check type: its config model and its class, in one module.
class FlagCheckConfig(CheckConfigBase):
    """Passes while a flag file exists."""

    type: Literal["flag"]
    path: NonEmptyStr


class FlagCheck(Check[FlagCheckConfig]):
    type: ClassVar[str] = "flag"
    config_model: ClassVar[type[CheckConfigBase]] = FlagCheckConfig

    @property
    def target(self) -> str:
        return self.config.path

    async def probe(self) -> Outcome:
        present = Path(self.config.path).exists()
        return Outcome(present, "flag is up" if present else "flag is down")


# 2. A notifier: its config model (with a secret field) and its class, in one module.
class LedgerNotifierConfig(NotifierConfigBase):
    """Writes one line per event into a ledger file, stamped with a private key."""

    type: Literal["ledger"]
    path: NonEmptyStr
    key: Annotated[str, Secret]


class LedgerNotifier(Notifier):
    type: ClassVar[str] = "ledger"
    config_model: ClassVar[type[NotifierConfigBase]] = LedgerNotifierConfig

    def render(self, notification: Notification) -> bytes:
        event = notification.event
        return f"{event.sequence} {event.kind} {event.incident['title']}\n".encode()

    async def send(self, event_id: str, body: bytes) -> Delivery:
        with open(self.config.path, "ab") as ledger:
            ledger.write(body)
        return Delivery("delivered", "written")


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # 3. One registry entry each.
    monkeypatch.setitem(CHECK_TYPES, FlagCheck.type, FlagCheck)
    monkeypatch.setitem(NOTIFIER_TYPES, LedgerNotifier.type, LedgerNotifier)


async def test_a_new_check_type_and_notifier_run_through_engine_and_outbox(tmp_path: Path, registered) -> None:
    flag, ledger = tmp_path / "flag", tmp_path / "ledger.txt"
    (tmp_path / "config.yaml").write_text(textwrap.dedent(f"""
        checks:
          - {{name: door, type: flag, path: "{flag}", open_after: 0s, resolve_after: 1}}
        notifiers:
          - {{name: book, type: ledger, path: "{ledger}", key: "k3y-not-for-logs"}}
    """))
    config = load_config(tmp_path / "config.yaml")
    assert secret_values(config) == ["k3y-not-for-logs"] and needs(config) == frozenset()

    store = Store(config.agent.state_dir / "lifeguard.db", agent_info={"name": "t", "version": "0"})
    await store.run(store.open)
    context = CheckContext()
    checks = [build_check(c, context) for c in config.checks]
    outbox: Outbox | None = None
    engine = Engine(store, checks, notify_all=["book"], on_events=lambda: outbox and outbox.wake())
    notifiers = {n.name: NOTIFIER_TYPES[n.type](n, lambda: context.http) for n in config.notifiers}
    outbox = Outbox(store, notifiers, evidence_url=lambda i: f"http://127.0.0.1/{i}",
                    policy=DeliveryPolicy(evidence_wait=0.0))
    await engine.restore()
    outbox.start()
    try:
        await engine.on_result(await checks[0].run())
        flag.touch()
        await engine.on_result(await checks[0].run())
        lines = await poll(lambda: _read(ledger), lambda text: text.count("\n") == 2, what="two ledger lines")
        assert lines.splitlines() == ["1 incident.opened door failing: flag is down", "2 incident.resolved door failing: flag is down"]
    finally:
        await outbox.stop(1)
        await engine.drain(1)
        await context.close()
        await store.aclose()


async def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_an_unregistered_type_is_a_config_error_naming_the_known_ones(tmp_path: Path) -> None:
    from agent.config import ConfigError

    (tmp_path / "config.yaml").write_text("checks:\n  - {name: door, type: flag, path: /x}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")
    assert caught.value.errors == ["checks[0].type: unknown check type 'flag' (expected one of: http, tcp, container, tls, process, host, command)"]
