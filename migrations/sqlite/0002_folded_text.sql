-- Folded copies of text that compares without regard to case (Unicode case folding and NFC,
-- computed by the server: SQL lower() is ASCII-only in SQLite and locale-dependent in
-- PostgreSQL). Filters, sorting and uniqueness read these. Rows written before this migration
-- get them, and user_name_key its new folding, from the server at startup (NULL until then).
ALTER TABLE users ADD COLUMN data_folded TEXT;
ALTER TABLE teams ADD COLUMN name_key TEXT;
ALTER TABLE teams ADD COLUMN data_folded TEXT;
CREATE INDEX teams_name_key ON teams (name_key);
DROP INDEX teams_name_lower;
