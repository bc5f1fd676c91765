"""``lifeguard incidents`` end to end: a real agent, its API with a token, the command as a process."""

from __future__ import annotations

import json
import socket

from agent.cli import _parser
from agent.cli_incidents import default_author, incident_lines
from tests.fixtures_agent import SECRET, agent_config
from tests.test_deliveries import lifeguard


def test_the_author_defaults_to_user_at_host(monkeypatch) -> None:
    monkeypatch.setenv("USER", "ann")
    monkeypatch.setenv("LOGNAME", "ann")
    assert default_author() == f"ann@{socket.gethostname()}"
    args = _parser().parse_args(["incidents", "comment", "inc_0123456789abcdef", "-m", "hi", "--internal"])
    assert (args.by, args.message, args.internal) == (None, "hi", True)


def test_show_lines_name_status_updates_and_comments() -> None:
    lines = incident_lines({
        "id": "inc_0123456789abcdef", "sev": "SEV-2", "title": "Checkout slow", "status": "acknowledged",
        "acknowledged_by": "ann", "phase": "identified", "check": "", "opened_at": "2026-11-18T11:06:40.000Z",
        "resolved_at": None, "updates": [{"at": "t", "phase": "identified", "message": "slow query", "author": "ann"}],
        "comments": [{"at": "t", "author": "bob", "text": "on it", "internal": True}], "timeline": [],
    })
    assert lines[0] == "inc_0123456789abcdef  [SEV-2] Checkout slow"
    assert "  status:     acknowledged by ann" in lines
    assert "  t  identified: slow query (ann)" in lines and "  t  bob (internal): on it" in lines


def test_show_lines_name_the_postmortem_flapping_and_what_holds_it_back() -> None:
    base = {"id": "inc_1", "sev": "SEV-1", "title": "db down", "status": "resolved", "check": "db",
            "opened_at": "t0", "resolved_at": "t1", "timeline": []}
    lines = incident_lines(base | {"postmortem": {"required": True, "path": "/var/lib/lifeguard/postmortems/inc_1.md"},
                                   "flapping": True, "suppressed_by": "inc_0"})
    assert "  postmortem: /var/lib/lifeguard/postmortems/inc_1.md" in lines
    assert "  flapping:   yes" in lines and "  held by:    inc_0" in lines
    assert "  postmortem: required, no draft yet" in incident_lines(base | {"postmortem": {"required": True, "path": None}})
    assert not [x for x in incident_lines(base | {"postmortem": {"required": False, "path": None}}) if "postmortem" in x]


async def test_open_ack_update_and_resolve_from_the_command_line(receiver, spawn_agent, tmp_path) -> None:
    hook = {"name": "ops", "type": "webhook", "url": receiver.url, "secret": SECRET, "timeout": "1s"}
    cfg = agent_config([], [hook])
    cfg["agent"]["api"]["token"] = "cli-t0ken"
    agent = spawn_agent(cfg)
    await agent.ready()
    config = str(agent.config_path)
    code, out, err = await lifeguard("incidents", "open", "--title", "Payments down", "--severity", "critical",
                                     "--service", "checkout", "--by", "ann@laptop", "--json", "-c", config)
    assert code == 0, err
    incident = json.loads(out)
    incident_id = incident["id"]
    assert incident["manual"] and incident["affected_services"] == ["checkout"]
    code, out, err = await lifeguard("incidents", "ack", incident_id, "-c", config)
    assert code == 0 and out.strip() == f"{incident_id} acknowledged by {default_author()}", (out, err)
    code, out, err = await lifeguard("incidents", "update", incident_id, "--phase", "identified", "-m", "PSP outage",
                                     "-c", config)
    assert code == 0 and out.strip() == f"{incident_id} is now identified", err
    code, out, err = await lifeguard("incidents", "resolve", incident_id, "--root-cause", "PSP outage", "-c", config)
    assert code == 0 and "resolved by" in out, err
    code, out, err = await lifeguard("incidents", "resolve", incident_id, "-c", config)
    assert code == 1 and "409" in err and "already resolved" in err
    code, out, err = await lifeguard("incidents", "list", "-c", config)
    assert code == 0 and incident_id in out and "resolved" in out and "SEV-1" in out
    code, out, err = await lifeguard("incidents", "show", incident_id, "-c", config)
    assert code == 0 and "root cause: PSP outage" in out and "identified: PSP outage" in out


async def test_silence_add_list_and_rm_from_the_command_line(spawn_agent) -> None:
    cfg = agent_config([], [])
    cfg["agent"]["api"]["token"] = "cli-t0ken"
    agent = spawn_agent(cfg)
    await agent.ready()
    config = str(agent.config_path)
    code, out, err = await lifeguard("silence", "add", "--check", "db", "--tag", "payments", "--duration", "2h",
                                     "--comment", "upgrading", "--by", "ann@laptop", "--json", "-c", config)
    assert code == 0, err
    silence = json.loads(out)
    assert silence["match"] == {"check": ["db"], "tags": ["payments"], "container": []}
    assert (silence["status"], silence["created_by"], silence["comment"]) == ("active", "ann@laptop", "upgrading")
    code, out, err = await lifeguard("silence", "list", "-c", config)
    assert code == 0 and silence["id"] in out and "active" in out and "check=db; tags=payments" in out, err
    code, out, err = await lifeguard("silence", "rm", silence["id"], "-c", config)
    assert code == 0 and out.strip() == f"{silence['id']} ended", err
    code, out, err = await lifeguard("silence", "list", "--json", "-c", config)
    assert code == 0 and [s["status"] for s in json.loads(out)] == ["expired"]
    code, out, err = await lifeguard("silence", "add", "--check", "db", "--duration", "2x", "-c", config)
    assert code == 1 and "duration" in err
