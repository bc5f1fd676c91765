-- Placeholder so this branch's 0009 has no gap: another branch owns migration 8; drop this file at merge.
SELECT 1;
