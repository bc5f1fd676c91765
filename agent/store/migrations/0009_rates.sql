-- 9: baselines and flapping. A check's passing latencies per minute, as counts per logarithmic
-- bin (agent/baseline.py), so its rolling median survives a restart; and whether an incident's
-- check is flapping (its incident stays open, not healed, until it stops).
CREATE TABLE latency_minutes (
    check_name TEXT NOT NULL,
    minute INTEGER NOT NULL,
    counts TEXT NOT NULL,
    PRIMARY KEY (check_name, minute)
) WITHOUT ROWID;
CREATE INDEX latency_minutes_by_minute ON latency_minutes (minute);

ALTER TABLE incidents ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
