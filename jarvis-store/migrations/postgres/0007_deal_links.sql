-- What the linker needs to fill client_id and conversation_id without taking over values that other
-- services set: the values it wrote itself, what each was computed for (the main contact, the talk),
-- and whether its last attempt failed, so that the deal is tried again.
ALTER TABLE amocrm_deals
    ADD COLUMN IF NOT EXISTS linked_client_id UUID,
    ADD COLUMN IF NOT EXISTS client_linked_for TEXT,
    ADD COLUMN IF NOT EXISTS linked_conversation_id UUID,
    ADD COLUMN IF NOT EXISTS conversation_linked_for TEXT,
    ADD COLUMN IF NOT EXISTS link_failed_at TIMESTAMPTZ;

CREATE INDEX IF NOT EXISTS amocrm_deals_link_failed_at
    ON amocrm_deals (link_failed_at) WHERE link_failed_at IS NOT NULL;
