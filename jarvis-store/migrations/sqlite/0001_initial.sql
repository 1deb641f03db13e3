-- Mirrors the PostgreSQL schema with SQLite's types: times are INTEGER microseconds since the Unix
-- epoch (UTC), JSON is TEXT, UUIDs are hyphenated TEXT, booleans are INTEGER 0/1.

CREATE TABLE IF NOT EXISTS amocrm_webhook_events (
    -- AUTOINCREMENT so an id is never reused after deletions: ids are referenced in logs.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    amocrm_entity_id TEXT,
    event_hash TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    account_id INTEGER,
    processed INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until INTEGER,
    last_error TEXT,
    processed_at INTEGER,
    dead_at INTEGER
);

CREATE INDEX IF NOT EXISTS amocrm_webhook_events_claimable
    ON amocrm_webhook_events (next_attempt_at, id)
    WHERE processed = 0 AND dead_at IS NULL;

CREATE INDEX IF NOT EXISTS amocrm_webhook_events_dead
    ON amocrm_webhook_events (dead_at)
    WHERE dead_at IS NOT NULL;

CREATE INDEX IF NOT EXISTS amocrm_webhook_events_entity
    ON amocrm_webhook_events (entity_type, amocrm_entity_id);

CREATE TABLE IF NOT EXISTS amocrm_deals (
    id TEXT PRIMARY KEY,
    client_id TEXT,
    conversation_id TEXT,
    amocrm_deal_id TEXT NOT NULL UNIQUE,
    pipeline_id INTEGER,
    status_id INTEGER,
    price INTEGER,
    name TEXT,
    responsible_user_id INTEGER,
    custom_fields TEXT,
    deal_full_data TEXT,
    contact_custom_fields TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER,
    updated_at INTEGER,
    closed_at INTEGER,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    synced_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS amocrm_deals_client_id ON amocrm_deals (client_id) WHERE client_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS amocrm_contacts (
    id TEXT PRIMARY KEY,
    amocrm_contact_id TEXT NOT NULL UNIQUE,
    name TEXT,
    first_name TEXT,
    last_name TEXT,
    responsible_user_id INTEGER,
    custom_fields TEXT,
    contact_full_data TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER,
    updated_at INTEGER,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    synced_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS amocrm_oauth_tokens (
    account TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    token_type TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS amocrm_rejected_webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body BLOB NOT NULL,
    content_type TEXT,
    reason TEXT NOT NULL,
    received_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS amocrm_rejected_webhooks_received_at
    ON amocrm_rejected_webhooks (received_at);

CREATE TABLE IF NOT EXISTS amocrm_api_usage (
    minute INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, endpoint, status)
);
