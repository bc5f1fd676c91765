"""Postmortems and the incident report end to end: ``lifeguard run`` as a real process with a real
failing HTTP target on 127.0.0.1, a SEV-1 check (so its postmortem is required), the target
recovering; then ``lifeguard postmortem`` and ``lifeguard report`` as processes against it."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.fixtures_agent import agent_config, poll
from tests.test_deliveries import lifeguard


def sev1_config(target_url: str) -> dict[str, Any]:
    cfg = agent_config([{"name": "shop", "type": "http", "url": target_url, "severity": "critical",
                         "tags": ["checkout"]}], [])
    cfg["agent"]["api"]["token"] = "pm-t0ken"
    return cfg


async def incident_of(agent: Any) -> dict[str, Any]:
    listed = await poll(lambda: agent.api("/api/incidents", "pm-t0ken"), lambda a: a[0] == 200 and a[1]["incidents"],
                        what="an incident")
    status, incident = await agent.api(f"/api/incidents/{listed[1]['incidents'][0]['id']}", "pm-t0ken")
    assert status == 200
    return incident


async def test_a_sev1_incident_that_recovers_gets_its_draft_and_the_commands_render_and_report_it(
    target, spawn_agent, tmp_path: Path
) -> None:
    target.status = 503
    agent = spawn_agent(sev1_config(target.url))
    await agent.ready()
    opened = await incident_of(agent)
    assert opened["severity"] == "critical" and opened["postmortem"] == {"required": True, "path": None}
    target.status = 200
    done = await poll(lambda: agent.api(f"/api/incidents/{opened['id']}", "pm-t0ken"),
                      lambda a: a[1]["postmortem"]["path"] is not None, what="the draft's path on the incident")
    incident = done[1]
    draft = tmp_path / "state" / "postmortems" / f"{opened['id']}.md"
    assert incident["status"] == "resolved" and incident["postmortem"] == {"required": True, "path": str(draft)}
    text = draft.read_text()
    assert text.startswith("# Postmortem: shop failing: HTTP 503") and "| Severity | SEV-1 (critical) |" in text
    assert "| opened | HTTP 503" in text and "| resolved | recovered: 2 passing results in a row |" in text
    assert "- The check's failing response: HTTP 503" in text and "- Services affected: checkout" in text

    config = str(agent.config_path)
    out_file = tmp_path / "by-hand.md"
    code, out, err = await lifeguard("postmortem", opened["id"], "-o", str(out_file), "-c", config)
    assert code == 0 and out.strip() == f"postmortem of {opened['id']} written to {out_file}", err
    by_hand = out_file.read_text()
    assert by_hand.startswith("# Postmortem: shop failing: HTTP 503")
    assert "| opened | HTTP 503" in by_hand and "| postmortem | postmortem draft written to" in by_hand
    code, out, err = await lifeguard("postmortem", "inc_0000000000000000", "-c", config)
    assert code == 1 and "404" in err

    code, out, err = await lifeguard("report", "--since", "1h", "--json", "-c", config)
    assert code == 0, err
    report = json.loads(out)
    critical = report["by_severity"]["critical"]
    assert report["total"] == 1 and critical["count"] == 1 and critical["mttr_s"] > 0 and critical["mttd_s"] >= 0
    assert critical["ack_sla_met"] == 0  # resolved unacknowledged within 5 min: neither met nor missed
    assert report["postmortems"] == {"required": 1, "written": 1} and report["by_check"] == {"shop": 1}
    code, out, err = await lifeguard("report", "-c", config)
    assert code == 0 and "Postmortems: 1 written of 1 required" in out and "MTTA < 5m for SEV-1: no data" in out
    code, out, err = await lifeguard("report", "--since", "forever", "-c", config)
    assert code == 1 and "since: expected a duration" in err


async def test_a_draft_that_could_not_be_written_is_written_at_the_next_start(
    target, spawn_agent, tmp_path: Path
) -> None:
    target.status = 500
    cfg = sev1_config(target.url)
    first = spawn_agent(cfg)
    await first.ready()
    opened = await incident_of(first)
    blocker = tmp_path / "state" / "postmortems"
    blocker.write_text("a file where the folder should be\n")  # the write at the resolve fails
    target.status = 200
    await poll(lambda: first.api(f"/api/incidents/{opened['id']}", "pm-t0ken"),
               lambda a: a[1]["status"] == "resolved", what="the resolve")
    await poll(lambda: _logged(first, "postmortem.failed"), bool, what="postmortem.failed in the log")
    status, incident = await first.api(f"/api/incidents/{opened['id']}", "pm-t0ken")
    assert incident["postmortem"] == {"required": True, "path": None}
    first.signal(signal.SIGKILL)
    await first.wait()

    blocker.unlink()
    second = spawn_agent(cfg)
    await second.ready()
    done = await poll(lambda: second.api(f"/api/incidents/{opened['id']}", "pm-t0ken"),
                      lambda a: a[1]["postmortem"]["path"] is not None, what="the draft written at the start")
    draft = Path(done[1]["postmortem"]["path"])
    assert draft == blocker / f"{opened['id']}.md" and "| opened | HTTP 500" in draft.read_text()
    assert [t["kind"] for t in done[1]["timeline"]].count("postmortem") == 1


async def _logged(agent: Any, event: str) -> bool:
    return any(e.get("event") == event for e in agent.log_events())
