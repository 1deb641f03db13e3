-- Gaps: time spans in which changes may not have reached the service (downtime, database refusals,
-- a webhook amoCRM switched off, or a span asked for by hand), and how far their catch-up got.
-- Times are Unix microseconds, like every other SQLite time column here.
CREATE TABLE IF NOT EXISTS jarvis_gaps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    from_at INTEGER NOT NULL,
    to_at INTEGER NOT NULL,
    detected_at INTEGER NOT NULL,
    -- Events-feed pages read and recorded so far: a restarted catch-up goes on from the next one.
    pages_done INTEGER NOT NULL DEFAULT 0,
    events_read INTEGER NOT NULL DEFAULT 0,
    read_done_at INTEGER,
    caught_up_at INTEGER
);

CREATE INDEX IF NOT EXISTS jarvis_gaps_open ON jarvis_gaps (id) WHERE caught_up_at IS NULL;

-- The entities a gap's events touched, coalesced: one row each, with whether the newest event deleted it.
CREATE TABLE IF NOT EXISTS jarvis_gap_entities (
    gap_id INTEGER NOT NULL REFERENCES jarvis_gaps (id) ON DELETE CASCADE,
    entity_type TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    last_event_at INTEGER NOT NULL,
    PRIMARY KEY (gap_id, entity_type, entity_id)
);

-- Named instants the service keeps across restarts: its heartbeat (to measure downtime) and the last
-- accepted webhook delivery.
CREATE TABLE IF NOT EXISTS jarvis_marks (
    name TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
