-- The events table and the deals table keep the column names and types of the original design, which
-- other services read. IF NOT EXISTS lets this adopt tables that the previous system already created.

CREATE TABLE IF NOT EXISTS amocrm_webhook_events (
    id BIGSERIAL PRIMARY KEY,
    ts TIMESTAMPTZ NOT NULL DEFAULT now(),
    event_type TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    amocrm_entity_id TEXT,
    event_hash TEXT UNIQUE NOT NULL,
    payload JSONB NOT NULL,
    account_id INT,
    processed BOOLEAN NOT NULL DEFAULT false
);

-- Queue columns.
ALTER TABLE amocrm_webhook_events
    ADD COLUMN IF NOT EXISTS attempts INT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS locked_until TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS last_error TEXT,
    ADD COLUMN IF NOT EXISTS processed_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS dead_at TIMESTAMPTZ;

-- Deduplication needs a unique index even on an adopted table that lacked the constraint.
CREATE UNIQUE INDEX IF NOT EXISTS amocrm_webhook_events_event_hash_key
    ON amocrm_webhook_events (event_hash);

-- What workers scan: claimable events in claim order. Small because processed and dead rows leave it.
CREATE INDEX IF NOT EXISTS amocrm_webhook_events_claimable
    ON amocrm_webhook_events (next_attempt_at, id)
    WHERE NOT processed AND dead_at IS NULL;

CREATE INDEX IF NOT EXISTS amocrm_webhook_events_dead
    ON amocrm_webhook_events (dead_at)
    WHERE dead_at IS NOT NULL;

CREATE INDEX IF NOT EXISTS amocrm_webhook_events_entity
    ON amocrm_webhook_events (entity_type, amocrm_entity_id);

CREATE TABLE IF NOT EXISTS amocrm_deals (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id UUID,
    conversation_id UUID,
    amocrm_deal_id TEXT UNIQUE NOT NULL,
    pipeline_id BIGINT,
    status_id BIGINT,
    price BIGINT,
    name TEXT,
    responsible_user_id BIGINT,
    custom_fields JSONB,
    deal_full_data JSONB,
    contact_custom_fields JSONB,
    metadata JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    closed_at TIMESTAMPTZ,
    is_deleted BOOLEAN NOT NULL DEFAULT false,
    synced_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS amocrm_deals_amocrm_deal_id_key ON amocrm_deals (amocrm_deal_id);
CREATE INDEX IF NOT EXISTS amocrm_deals_client_id ON amocrm_deals (client_id) WHERE client_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS amocrm_contacts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    amocrm_contact_id TEXT UNIQUE NOT NULL,
    name TEXT,
    first_name TEXT,
    last_name TEXT,
    responsible_user_id BIGINT,
    custom_fields JSONB,
    contact_full_data JSONB,
    metadata JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    is_deleted BOOLEAN NOT NULL DEFAULT false,
    synced_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS amocrm_oauth_tokens (
    account TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    token_type TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS amocrm_rejected_webhooks (
    id BIGSERIAL PRIMARY KEY,
    body BYTEA NOT NULL,
    content_type TEXT,
    reason TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS amocrm_rejected_webhooks_received_at
    ON amocrm_rejected_webhooks (received_at);

CREATE TABLE IF NOT EXISTS amocrm_api_usage (
    minute TIMESTAMPTZ NOT NULL,
    endpoint TEXT NOT NULL,
    status INT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (minute, endpoint, status)
);
