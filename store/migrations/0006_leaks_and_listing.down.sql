-- Undoes 0006: the listing index and the leak mark (its values go).
DROP INDEX api_keys_created_idx;
ALTER TABLE api_keys DROP COLUMN leaked_at;
