-- What the access review needs beyond the current state (the audit trail keeps the history):
-- when and by whom each effective role of a user and each team membership was granted, and
-- when each key was last used. Rows written before this migration keep NULL in these columns:
-- their grant time and actor are unknown ("since: unknown" in the review), not made up.

-- The actor is the audit trail's actor of the request that granted it (a key id, `cli:<user>`,
-- `console:<userName>`, `system`).
ALTER TABLE user_roles ADD COLUMN granted_at TEXT;
ALTER TABLE user_roles ADD COLUMN granted_by TEXT;

ALTER TABLE team_members ADD COLUMN added_at TEXT;
ALTER TABLE team_members ADD COLUMN added_by TEXT;

-- Updated at most once a minute per key (see `KeyWrites::touch_key`), so a busy identity
-- provider does not turn every request into a write.
ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;
