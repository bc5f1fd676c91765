-- 2: heal is generic. The budget counts attempts per (kind, target); every attempt made so far
-- was a container restart, so the budget of each container is what it was.
ALTER TABLE heal_attempts RENAME COLUMN container TO target;
ALTER TABLE heal_attempts ADD COLUMN kind TEXT NOT NULL DEFAULT 'restart_container';
CREATE INDEX heal_attempts_by_key ON heal_attempts (kind, target, at);
