-- 6: maintenance. An incident recorded while a maintenance window or a silence matched its check
-- says so (nothing was sent for it yet); silences are made through the API and kept after they
-- end, so they are listed as expired for a while.
ALTER TABLE incidents ADD COLUMN in_maintenance INTEGER NOT NULL DEFAULT 0;

CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    match TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    comment TEXT,
    created_by TEXT NOT NULL
);
CREATE INDEX silences_by_end ON silences (ends_at);
