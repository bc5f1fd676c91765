-- 5: incidents people run: acknowledge, a public phase, manual incidents, comments, status
-- updates and a resolution by hand. 'acknowledged' is unresolved like 'open', so the one
-- unresolved incident per check now covers both; manual incidents belong to no check.
ALTER TABLE incidents ADD COLUMN acknowledged_at REAL;
ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT;
ALTER TABLE incidents ADD COLUMN phase TEXT NOT NULL DEFAULT 'investigating';
ALTER TABLE incidents ADD COLUMN assignee TEXT;
ALTER TABLE incidents ADD COLUMN description TEXT;
ALTER TABLE incidents ADD COLUMN affected_services TEXT NOT NULL DEFAULT '[]';
ALTER TABLE incidents ADD COLUMN manual INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN resolved_by TEXT;
ALTER TABLE incidents ADD COLUMN root_cause TEXT;
ALTER TABLE incidents ADD COLUMN solution TEXT;
ALTER TABLE incidents ADD COLUMN follow_ups TEXT NOT NULL DEFAULT '[]';
UPDATE incidents SET phase = 'resolved' WHERE status = 'resolved';

DROP INDEX one_open_incident_per_check;
CREATE UNIQUE INDEX one_unresolved_incident_per_check ON incidents (check_name)
    WHERE status != 'resolved' AND manual = 0;

ALTER TABLE timeline ADD COLUMN author TEXT;

CREATE TABLE comments (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    at REAL NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    internal INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX comments_by_incident ON comments (incident_id, id);

CREATE TABLE updates (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    at REAL NOT NULL,
    author TEXT NOT NULL,
    phase TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX updates_by_incident ON updates (incident_id, id);
