"""The command check against real scripts the tests write, and its perfdata parser on its own."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.config import ConfigError, load_config
from checks import CheckContext, build_check
from checks.command import OUTPUT_LIMIT, CommandCheck, CommandCheckConfig
from checks.perfdata import parse_perfdata, split_output

# -- the perfdata parser (pure) --------------------------------------------------------------------


def test_the_message_is_the_first_line_up_to_the_bar() -> None:
    assert split_output("DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n") == (
        "DISK OK - free space: / 3326 MB (56%);", "/=2643MB;5948;5958;0;5968",
    )


def test_perfdata_also_comes_from_the_first_later_line_with_a_bar_and_every_line_after() -> None:
    output = "OK - all well | a=1\nlong text 1\nlong text 2 | b=2s\nc=3%\n'd e'=4\n"
    message, perf = split_output(output)
    assert message == "OK - all well"
    assert [e["label"] for e in parse_perfdata(perf)] == ["a", "b", "c", "d e"]


def test_no_output_is_no_message_and_no_perfdata() -> None:
    assert split_output("") == ("", "")
    assert parse_perfdata("") == []


def test_every_field_of_an_entry_is_read() -> None:
    assert parse_perfdata("time=0.002s;1;2.5;0;10") == [
        {"label": "time", "value": 0.002, "uom": "s", "warn": "1", "crit": "2.5", "min": 0.0, "max": 10.0},
    ]


def test_quoted_labels_keep_spaces_and_doubled_quotes() -> None:
    entries = parse_perfdata("'free space /var'=51% 'it''s'=3c")
    assert [(e["label"], e["value"], e["uom"]) for e in entries] == [("free space /var", 51.0, "%"), ("it's", 3.0, "c")]


@pytest.mark.parametrize(
    ("text", "value", "uom"),
    [("a=10", 10.0, ""), ("a=-1.5e3ms", -1500.0, "ms"), ("a=12KB", 12.0, "KB"), ("a=3us", 3.0, "us"),
     ("a=99.9%", 99.9, "%"), ("a=7c", 7.0, "c"), ("a=U", None, ""), ("a=.5GB", 0.5, "GB")],
)
def test_values_and_units_of_measure(text: str, value: float | None, uom: str) -> None:
    [entry] = parse_perfdata(text)
    assert (entry["value"], entry["uom"]) == (value, uom)


def test_ranges_are_kept_as_written_and_empty_fields_are_none() -> None:
    [entry] = parse_perfdata("load=0.5;@1:5;~:10;;")
    assert (entry["warn"], entry["crit"], entry["min"], entry["max"]) == ("@1:5", "~:10", None, None)


def test_a_malformed_entry_is_skipped_and_the_others_kept() -> None:
    entries = parse_perfdata("good=1 junk bad=abc also=2;3 'unclosed=4")
    assert [(e["label"], e["value"]) for e in entries] == [("good", 1.0), ("also", 2.0)]


def test_entries_are_capped() -> None:
    assert len(parse_perfdata(" ".join(f"m{i}={i}" for i in range(500)))) == 100


# -- the check against real programs -----------------------------------------------------------


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def command_check(command: list[str], **keys: Any) -> CommandCheck:
    keys.setdefault("timeout", "5s")
    cfg = CommandCheckConfig.model_validate({"name": "plugin", "type": "command", "command": command, **keys})
    check = build_check(cfg, CheckContext())
    assert isinstance(check, CommandCheck)
    return check


@pytest.mark.parametrize(
    ("code", "ok", "warning", "status"),
    [(0, True, False, "ok"), (1, True, True, "warning"), (2, False, False, "failing"), (3, False, False, "failing")],
)
async def test_exit_codes_follow_the_plugin_convention(tmp_path: Path, code: int, ok: bool, warning: bool,
                                                       status: str) -> None:
    plugin = script(tmp_path, "plugin.sh", f"""\
        echo "SERVICE STATE {code} | 'queue depth'=12;50;100;0"
        exit {code}
    """)
    result = await command_check([str(plugin)]).run()
    assert (result.ok, result.warning, result.status) == (ok, warning, status)
    assert result.message == f"SERVICE STATE {code}"
    assert result.details["exit_code"] == code
    assert result.details["state"] == ["OK", "WARNING", "CRITICAL", "UNKNOWN"][code]
    assert result.details["perfdata"] == [
        {"label": "queue depth", "value": 12.0, "uom": "", "warn": "50", "crit": "100", "min": 0.0, "max": None},
    ]


async def test_an_exit_code_past_3_is_unknown_and_says_its_code(tmp_path: Path) -> None:
    plugin = script(tmp_path, "plugin.sh", "echo 'no such thing' >&2\nexit 127\n")
    result = await command_check([str(plugin)]).run()
    assert not result.ok and result.message == "exit code 127: no such thing"
    assert result.details["state"] == "UNKNOWN"


async def test_silence_gets_a_message_of_its_state(tmp_path: Path) -> None:
    result = await command_check([str(script(tmp_path, "plugin.sh", "exit 2\n"))]).run()
    assert not result.ok and result.message == "CRITICAL (exit code 2)"


async def test_arguments_are_passed_as_they_are_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    # A shell would run the second command; an argument vector hands it over as text.
    result = await command_check([sys.executable, "-c", "import sys; print(sys.argv[1])", f"x; touch {marker}"]).run()
    assert result.ok and result.message == f"x; touch {marker}"
    assert not marker.exists()


async def test_env_is_added_to_the_agents_environment_and_masked_in_what_it_reports(tmp_path: Path) -> None:
    plugin = script(tmp_path, "plugin.sh", """\
        echo "token is $API_TOKEN, home is $HOME | 'x $API_TOKEN'=1"
    """)
    check = command_check([str(plugin)], env={"API_TOKEN": "s3cr3t-t0ken-value"})
    assert "s3cr3t" not in repr(check.config)
    result = await check.run()
    assert result.ok
    assert result.message == f"token is [redacted], home is {os.environ['HOME']}"
    assert result.details["perfdata"][0]["label"] == "x [redacted]"


async def test_cwd_is_where_it_runs(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    result = await command_check([sys.executable, "-c", "import os; print(os.getcwd())"], cwd=str(tmp_path / "here")).run()
    assert result.message == str(tmp_path / "here")


async def test_a_program_that_cannot_start_fails_as_unknown(tmp_path: Path) -> None:
    result = await command_check([str(tmp_path / "missing")]).run()
    assert not result.ok and result.message == f"cannot run {str(tmp_path / 'missing')!r}: No such file or directory"


async def test_a_megabyte_of_output_is_drained_and_only_64_KiB_kept(tmp_path: Path) -> None:
    # 1 MiB: far more than a pipe buffer, so a reader that stopped at its limit would hang the child.
    code = "import sys; sys.stdout.write('BIG | size=1MB\\n' + 'x' * (1024 * 1024)); sys.stdout.flush(); sys.exit(1)"
    result = await command_check([sys.executable, "-c", code]).run()
    assert result.ok and result.warning and result.message == "BIG"
    assert result.details["output_truncated"] is True
    assert result.details["perfdata"][0]["label"] == "size"
    assert OUTPUT_LIMIT == 64 * 1024


async def test_a_timeout_kills_the_whole_group_even_a_grandchild_that_keeps_the_output_open(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    plugin = script(tmp_path, "plugin.sh", f"""\
        sleep 300 &
        echo "$$ $!" > {pids}
        wait
    """)
    result = await command_check([str(plugin)], timeout="1s", interval="10s").run()
    assert not result.ok and result.message == "timed out after 1s"
    child, grandchild = (int(p) for p in pids.read_text().split())
    for pid in (child, grandchild):
        assert await _gone(pid), f"process {pid} still runs"


async def test_what_a_command_leaves_running_is_ended_when_it_exits(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    plugin = script(tmp_path, "plugin.sh", f"""\
        sleep 300 >/dev/null 2>&1 &
        echo $! > {pids}
        echo "OK - started"
    """)
    result = await command_check([str(plugin)]).run()
    assert result.ok and result.message == "OK - started"
    assert await _gone(int(pids.read_text()))


async def _gone(pid: int, within: float = 5.0) -> bool:
    """Not running: no such process, or only the entry of one that was killed (a zombie nobody
    reaped). A SIGKILL is delivered at once but acted on by the kernel a moment later: polled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)


# -- config ------------------------------------------------------------------------------------


def errors(folder: Path, checks: str) -> list[str]:
    path = folder / "config.yaml"
    path.write_text(f"checks: {checks}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return caught.value.errors


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("{name: c, type: command, command: []}",
         "checks[0].command: must name the program to run (a list: program, then its arguments)"),
        ("{name: c, type: command}", "checks[0].command: required"),
        ("{name: c, type: command, command: ['']}", "checks[0].command[0]: must not be empty"),
        ("{name: c, type: command, command: 'check_disk -w 10'}", "checks[0].command: expected a list"),
        ("{name: c, type: command, command: [x], env: {'A=B': v}}",
         "checks[0].env['A=B']: invalid variable name (no '=', not empty)"),
        ("{name: c, type: command, command: [x], cwd: nowhere}", "checks[0].cwd: {base}/nowhere does not exist"),
        ("{name: c, type: command, command: [x], open_on: sometimes}", "checks[0].open_on: expected 'failing' or 'warning'"),
    ],
)
def test_config_mistakes_are_located(tmp_path: Path, check: str, expected: str) -> None:
    assert errors(tmp_path, f"[{check}]") == [expected.format(base=tmp_path)]


def test_env_values_are_secrets_of_the_config(tmp_path: Path) -> None:
    from agent.plugins import secret_values

    path = tmp_path / "config.yaml"
    path.write_text("checks: [{name: c, type: command, command: [x], env: {PASS: hunter2-long}}]\n")
    assert "hunter2-long" in secret_values(load_config(path, {}))


async def test_once_shows_a_warning_as_passing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import _once

    warn = script(tmp_path, "warn.sh", "echo 'LOAD WARNING | load1=3.2;2;4'\nexit 1\n")
    crit = script(tmp_path, "crit.sh", "echo 'LOAD CRITICAL'\nexit 2\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"checks: [{{name: w, type: command, command: [{warn}]}}, "
                    f"{{name: h, type: host, max_memory_percent: 100}}]\n")
    assert await _once(load_config(path, {})) == 0
    out = capsys.readouterr().out
    assert [line.split()[3] for line in out.splitlines()[1:3]] == ["warning", "ok"]
    assert "2 passing, 0 failing" in out

    path.write_text(f"checks: [{{name: c, type: command, command: [{crit}]}}]\n")
    assert await _once(load_config(path, {})) == 1
    assert "LOAD CRITICAL" in capsys.readouterr().out


def test_long_labels_and_ranges_are_cut() -> None:
    [entry] = parse_perfdata(f"'{'l' * 1000}'=1;{'9' * 1000}")
    assert len(entry["label"]) == 200 and entry["warn"] == "9" * 64
