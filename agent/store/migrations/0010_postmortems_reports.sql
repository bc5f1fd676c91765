-- 10: postmortems and the incident report. When the failing streak that opened a check's incident
-- began (MTTD = opened_at - failing_since; the state kept it only while the incident was open),
-- whether the incident required a postmortem when it resolved (its policy, or open longer than
-- postmortem_after), and where its draft was written (null: not written yet, or the write failed).
ALTER TABLE incidents ADD COLUMN failing_since REAL;
ALTER TABLE incidents ADD COLUMN postmortem_required INTEGER;
ALTER TABLE incidents ADD COLUMN postmortem_path TEXT;
UPDATE incidents SET failing_since = json_extract(state, '$.failing_since')
    WHERE manual = 0 AND json_valid(state) AND json_type(state, '$.failing_since') IN ('real', 'integer');
CREATE INDEX incidents_postmortem_missing ON incidents (resolved_at)
    WHERE postmortem_required = 1 AND postmortem_path IS NULL;
