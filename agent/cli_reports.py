"""``lifeguard postmortem`` and ``lifeguard report``: through the running agent's API.

``postmortem ID`` GETs the incident and its evidence from the agent (``agent.api.listen``, with
``agent.api.token``) and renders the draft here with the config's template, as the agent renders
the one it writes when a required postmortem's incident resolves: to stdout, or atomically to
``-o FILE``. ``report`` prints ``GET /api/reports/incidents`` as a table, or as JSON (``--json``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli_ops import EXIT_FAILED, EXIT_OK, _call

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import Config


def postmortem(config: Config, incident_id: str, output: str | None) -> int:
    from agent.postmortem import TemplateProblem, render_draft, service_for

    incident = _call(config, "GET", f"/api/incidents/{incident_id}", {})
    if incident is None:
        return EXIT_FAILED
    evidence = _call(config, "GET", f"/api/incidents/{incident_id}/evidence", {})
    if evidence is None:
        return EXIT_FAILED
    try:
        text = render_draft(
            config.agent.postmortem_template, incident, evidence,
            generated_at=time.time(), service=service_for(config, incident.get("check")),
        )
    except TemplateProblem as exc:
        print(f"lifeguard: postmortem template: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if output is None or output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    path = Path(output)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        print(f"lifeguard: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"postmortem of {incident_id} written to {path}")
    return EXIT_OK


def report(config: Config, since: str, as_json: bool) -> int:
    from agent.reports import report_lines

    answer = _call(config, "GET", "/api/reports/incidents", {"since": since})
    if answer is None:
        return EXIT_FAILED
    if as_json:
        json.dump(answer, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return EXIT_OK
    print("\n".join(report_lines(answer)))
    return EXIT_OK
