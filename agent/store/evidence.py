"""Evidence bundles, one per incident and phase (opened, resolved), and what heals printed.

The output of an incident's heals (the ``run`` kind's) is kept in a row of its own (phase
``heals``, a list), so a bundle collected late never overwrites it; it is shown as the
``heals`` list of the opened bundle.
"""

from __future__ import annotations

import json
from typing import Any

from agent.store._repo import Repo


class EvidenceRepo(Repo):
    def save(self, incident_id: str, phase: str, at: float, bundle: dict[str, Any]) -> None:
        with self._store.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO evidence (incident_id, phase, collected_at, bundle) VALUES (?,?,?,?)",
                (incident_id, phase, at, json.dumps(bundle)),
            )

    def add_heal(self, incident_id: str, at: float, entry: dict[str, Any]) -> None:
        """One heal's outcome and output (already masked and cut to size), after the others."""
        with self._store.transaction():
            row = self.db.execute(
                "SELECT bundle FROM evidence WHERE incident_id = ? AND phase = 'heals'", (incident_id,)
            ).fetchone()
            heals = [*(json.loads(row["bundle"]) if row is not None else []), entry]
            self.db.execute(
                "INSERT OR REPLACE INTO evidence (incident_id, phase, collected_at, bundle) VALUES (?, 'heals', ?, ?)",
                (incident_id, at, json.dumps(heals)),
            )

    def get(self, incident_id: str) -> dict[str, Any]:
        rows = self.db.execute("SELECT phase, bundle FROM evidence WHERE incident_id = ?", (incident_id,)).fetchall()
        found = {r["phase"]: json.loads(r["bundle"]) for r in rows}
        opened = found.get("opened")
        if opened is not None and "heals" in found:
            opened["heals"] = found["heals"]
        return {"opened": opened, "resolved": found.get("resolved")}

    def prune_resolved(self, before: float) -> int:
        return self.db.execute(
            "DELETE FROM evidence WHERE incident_id IN"
            " (SELECT id FROM incidents WHERE status = 'resolved' AND resolved_at < ?)",
            (before,),
        ).rowcount
