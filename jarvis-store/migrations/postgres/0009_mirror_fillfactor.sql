-- The mirror tables are rewritten in place far more often than they grow: every change of a deal or a
-- contact updates its row. Room left on each page lets an update that changes no indexed column stay
-- on its page (a HOT update): no new entries in the tables' five and two indexes, and no index bloat
-- for the upserts' conflict lookups to wade through. Applies to pages filled from now on; no rewrite.
ALTER TABLE amocrm_deals SET (fillfactor = 70);
ALTER TABLE amocrm_contacts SET (fillfactor = 70);
