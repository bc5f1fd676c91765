"""Evidence bundles, one per incident and phase (opened, resolved)."""

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

    def get(self, incident_id: str) -> dict[str, Any]:
        rows = self.db.execute("SELECT phase, bundle FROM evidence WHERE incident_id = ?", (incident_id,)).fetchall()
        found = {r["phase"]: json.loads(r["bundle"]) for r in rows}
        return {"opened": found.get("opened"), "resolved": found.get("resolved")}

    def prune_resolved(self, before: float) -> int:
        return self.db.execute(
            "DELETE FROM evidence WHERE incident_id IN"
            " (SELECT id FROM incidents WHERE status = 'resolved' AND resolved_at < ?)",
            (before,),
        ).rowcount
