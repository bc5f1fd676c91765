"""A command check in ``lifeguard run`` (a real subprocess): warnings, open_on, the API, metrics and secrets."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.fixtures_agent import SECRET, Receiver, agent_config, poll, wait_until

TOKEN = "plugin-t0ken-that-must-not-leak"


async def test_a_warning_opens_an_incident_with_open_on_warning_and_shows_everywhere(
    tmp_path: Path, receiver: Receiver, spawn_agent, payload_schema
) -> None:
    state = tmp_path / "state.txt"
    state.write_text("1")
    plugin = tmp_path / "check_queue.sh"
    # Exits with the code in state.txt; says its token, which the agent must mask wherever it shows it.
    plugin.write_text(f"""#!/bin/sh
code=$(cat {state})
echo "QUEUE state $code token=$PLUGIN_TOKEN | 'queue depth'=75;50;100;0 time=0.01s"
exit $code
""")
    plugin.chmod(0o755)
    cfg = agent_config(
        [
            {"name": "queue", "type": "command", "command": [str(plugin)], "env": {"PLUGIN_TOKEN": TOKEN},
             "open_on": "warning"},
            {"name": "queue-quiet", "type": "command", "command": [str(plugin)], "env": {"PLUGIN_TOKEN": TOKEN}},
        ],
        [{"name": "ops", "type": "webhook", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout": "1s"}],
    )
    agent = spawn_agent(cfg, {"HOOK_SECRET": SECRET})
    await agent.ready()

    opened = (await wait_until(lambda: receiver.of("incident.opened"), 15, "incident.opened"))[0]
    payload_schema.validate(opened)
    assert opened["incident"]["check"] == "queue"  # queue-quiet warns too, but opens nothing
    assert opened["incident"]["title"] == "queue warning: QUEUE state 1 token=[redacted]"

    checks = await poll(lambda: agent.api("/api/checks"), lambda r: all(c["last_result"] for c in r[1]["checks"]),
                        what="both checks to have a result")
    by_name = {c["name"]: c for c in checks[1]["checks"]}
    for name in ("queue", "queue-quiet"):
        last = by_name[name]["last_result"]
        assert last["status"] == "warning" and last["ok"] is True and by_name[name]["state"] == "passing"
        assert last["details"]["exit_code"] == 1
        assert last["details"]["perfdata"] == [
            {"label": "queue depth", "value": 75.0, "uom": "", "warn": "50", "crit": "100", "min": 0.0, "max": None},
            {"label": "time", "value": 0.01, "uom": "s", "warn": None, "crit": None, "min": None, "max": None},
        ]
    assert by_name["queue"]["incident_id"] == opened["incident"]["id"] and by_name["queue-quiet"]["incident_id"] is None

    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{agent.api_port}/metrics") as r:
            metrics = await r.text()
    assert 'lifeguard_check_warning{check="queue-quiet",type="command"} 1.0' in metrics
    assert 'lifeguard_check_up{check="queue-quiet",type="command"} 1.0' in metrics

    _, evidence = await poll(lambda: agent.api(f"/api/incidents/{opened['incident']['id']}/evidence"),
                             lambda r: r[1].get("opened") is not None, what="the opening evidence")
    assert evidence["opened"]["details"]["perfdata"][0]["label"] == "queue depth"

    state.write_text("0")  # plain passes resolve it
    await wait_until(lambda: receiver.of("incident.resolved"), 15, "incident.resolved")

    agent.signal(15)
    assert await agent.wait() == 0
    everything = agent.log_text() + "".join(str(e) for e in receiver.events) + str(checks) + str(evidence)
    assert TOKEN not in everything
