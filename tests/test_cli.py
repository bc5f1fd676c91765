"""Argument parsing of the `lifeguard` command (the commands themselves run in test_e2e)."""

from __future__ import annotations

import pytest

from agent.cli import _parser


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["once"], None),
        (["--log-level", "debug", "once"], "debug"),
        (["once", "--log-level", "error"], "error"),
        (["--log-level", "debug", "run", "-c", "x.yaml"], "debug"),
        (["gen-secret", "--log-level", "warning"], "warning"),
    ],
)
def test_log_level_is_accepted_before_or_after_the_command(argv: list[str], level: str | None) -> None:
    assert getattr(_parser().parse_args(argv), "log_level", None) == level


def test_run_options() -> None:
    args = _parser().parse_args(["run", "--no-heal", "-c", "/etc/lifeguard/config.yaml"])
    assert args.no_heal and args.config == "/etc/lifeguard/config.yaml"


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args([])
    assert exc.value.code == 2 and "COMMAND" in capsys.readouterr().err
