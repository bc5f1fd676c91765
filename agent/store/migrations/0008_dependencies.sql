-- 8: dependencies. An incident opened while a check it depends on (or the Docker engine) had an
-- open incident is held back: ``suppressed_by`` names that incident until it is released (then
-- NULL, exactly once, also across restarts); ``cause_id`` keeps the name for good, so the cause's
-- incident lists its impact.
ALTER TABLE incidents ADD COLUMN suppressed_by TEXT;
ALTER TABLE incidents ADD COLUMN cause_id TEXT;
CREATE INDEX incidents_by_cause ON incidents (cause_id) WHERE cause_id IS NOT NULL;
