-- Delete and restore events per mirrored entity. A delete body carries no time, so a row's
-- `is_deleted` is derived from these (deletes outnumber restores), whatever their order of arrival.
CREATE TABLE IF NOT EXISTS amocrm_deletions (
    entity_type TEXT NOT NULL,
    amocrm_id TEXT NOT NULL,
    event_hash TEXT NOT NULL,
    deleted BOOLEAN NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_type, amocrm_id, event_hash)
);
