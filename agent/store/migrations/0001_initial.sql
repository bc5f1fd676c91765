-- 1: the first schema (Lifeguard 0.1.0)
CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    check_name TEXT NOT NULL,
    started_at REAL NOT NULL,
    ok INTEGER NOT NULL,
    latency REAL NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX results_by_check ON results (check_name, id);

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    check_name TEXT NOT NULL,
    check_type TEXT NOT NULL,
    target TEXT NOT NULL,
    container TEXT,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    opened_at REAL NOT NULL,
    resolved_at REAL,
    resolve_reason TEXT,
    max_restarts INTEGER,
    next_sequence INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX one_open_incident_per_check ON incidents (check_name) WHERE status = 'open';
CREATE INDEX incidents_by_time ON incidents (opened_at);

CREATE TABLE timeline (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX timeline_by_incident ON timeline (incident_id, id);

CREATE TABLE evidence (
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    phase TEXT NOT NULL,
    collected_at REAL NOT NULL,
    bundle TEXT NOT NULL,
    PRIMARY KEY (incident_id, phase)
);

CREATE TABLE heal_attempts (
    id INTEGER PRIMARY KEY,
    container TEXT NOT NULL,
    at REAL NOT NULL,
    incident_id TEXT
);
CREATE INDEX heal_attempts_by_time ON heal_attempts (at);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    notifier TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    body BLOB,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL,
    UNIQUE (event_id, notifier)
);
CREATE INDEX outbox_queue ON outbox (notifier, status, incident_id, sequence);
