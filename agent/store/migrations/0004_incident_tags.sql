-- 4: an incident carries its check's tags (routes match on them; channels show them).
ALTER TABLE incidents ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
