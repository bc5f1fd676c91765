-- 7: result roll-ups. Raw results are kept for a short while (retention.results_per_check); what the
-- status page's 90 days and later reports need is kept as counts per check and UTC minute (a couple
-- of weeks) and per check and UTC day (about a year), updated in the transaction that writes the
-- results. Minutes and days are numbered since the epoch (minute = started_at // 60, day //= 86400).
-- Both are keyed by time first: a flush writes at their end, retention cuts their head and the
-- status page reads a range of days.
CREATE TABLE results_minute (
    minute INTEGER NOT NULL,
    check_name TEXT NOT NULL,
    total INTEGER NOT NULL,
    failing INTEGER NOT NULL,
    latency_sum REAL NOT NULL,
    latency_max REAL NOT NULL,
    PRIMARY KEY (minute, check_name)
) WITHOUT ROWID;

CREATE TABLE results_day (
    day INTEGER NOT NULL,
    check_name TEXT NOT NULL,
    total INTEGER NOT NULL,
    failing INTEGER NOT NULL,
    latency_sum REAL NOT NULL,
    latency_max REAL NOT NULL,
    PRIMARY KEY (day, check_name)
) WITHOUT ROWID;

-- The results an older version kept become the first roll-ups.
INSERT INTO results_minute (minute, check_name, total, failing, latency_sum, latency_max)
SELECT CAST(started_at / 60 AS INTEGER) AS m, check_name, COUNT(*), SUM(ok = 0), SUM(latency), MAX(latency)
FROM results GROUP BY m, check_name;

INSERT INTO results_day (day, check_name, total, failing, latency_sum, latency_max)
SELECT CAST(started_at / 86400 AS INTEGER) AS d, check_name, COUNT(*), SUM(ok = 0), SUM(latency), MAX(latency)
FROM results GROUP BY d, check_name;
