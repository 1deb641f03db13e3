-- Refused bodies keep only their first 64 KiB; the full length and digest still identify the whole.
ALTER TABLE amocrm_rejected_webhooks ADD COLUMN IF NOT EXISTS body_length BIGINT;
ALTER TABLE amocrm_rejected_webhooks ADD COLUMN IF NOT EXISTS body_sha256 TEXT;

-- Small facts the service shares with `jarvis status` (another process), e.g. since when and why
-- amoCRM API access is broken.
CREATE TABLE IF NOT EXISTS jarvis_state (
    key TEXT PRIMARY KEY,
    value JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
