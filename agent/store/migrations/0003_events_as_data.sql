-- 3: events are data. An event is stored once, as what happened (its kind, its fields and the
-- incident as it was); each notifier renders it at its first attempt (outbox.body keeps those
-- bytes for every retry). The outbox keeps one delivery row per (event, notifier).
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    sequence INTEGER NOT NULL,
    kind TEXT NOT NULL,
    occurred_at REAL NOT NULL,
    reason TEXT,
    agent TEXT NOT NULL,
    incident TEXT NOT NULL,
    fields TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX events_by_incident ON events (incident_id, sequence);

INSERT INTO events (id, incident_id, sequence, kind, occurred_at, reason, agent, incident)
SELECT event_id, incident_id, sequence, event,
       round((julianday(json_extract(payload, '$.occurred_at')) - 2440587.5) * 86400.0, 3),
       json_extract(payload, '$.reason'), json_extract(payload, '$.agent'), json_extract(payload, '$.incident')
FROM outbox GROUP BY event_id;

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id),
    notifier TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    body BLOB,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL,
    UNIQUE (event_id, notifier)
);
INSERT INTO deliveries (id, event_id, notifier, incident_id, sequence, body, status, attempts, next_attempt_at,
                        last_error, created_at, delivered_at)
SELECT id, event_id, notifier, incident_id, sequence, body, status, attempts, next_attempt_at,
       last_error, created_at, delivered_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE deliveries RENAME TO outbox;
CREATE INDEX outbox_queue ON outbox (notifier, status, incident_id, sequence);
