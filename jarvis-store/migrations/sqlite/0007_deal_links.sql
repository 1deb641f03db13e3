-- What the linker needs to fill client_id and conversation_id without taking over values that other
-- services set: the values it wrote itself, what each was computed for (the main contact, the talk),
-- and whether its last attempt failed, so that the deal is tried again.
ALTER TABLE amocrm_deals ADD COLUMN linked_client_id TEXT;
ALTER TABLE amocrm_deals ADD COLUMN client_linked_for TEXT;
ALTER TABLE amocrm_deals ADD COLUMN linked_conversation_id TEXT;
ALTER TABLE amocrm_deals ADD COLUMN conversation_linked_for TEXT;
ALTER TABLE amocrm_deals ADD COLUMN link_failed_at INTEGER;

CREATE INDEX IF NOT EXISTS amocrm_deals_link_failed_at
    ON amocrm_deals (link_failed_at) WHERE link_failed_at IS NOT NULL;
