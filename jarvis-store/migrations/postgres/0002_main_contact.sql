-- The lead's main contact, so a contact's changed fields reach its deals' contact_custom_fields.
ALTER TABLE amocrm_deals ADD COLUMN IF NOT EXISTS main_contact_id TEXT;
CREATE INDEX IF NOT EXISTS amocrm_deals_main_contact_id
    ON amocrm_deals (main_contact_id) WHERE main_contact_id IS NOT NULL;
