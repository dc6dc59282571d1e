-- Users, teams (SCIM Groups), memberships, application keys and the audit trail.
-- Timestamps are RFC 3339 UTC strings of fixed width (millisecond precision), so text order is time order.

CREATE TABLE users (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_name TEXT NOT NULL,
    -- lower-cased userName: SCIM userName is unique without regard to case
    user_name_key TEXT NOT NULL,
    external_id TEXT,
    display_name TEXT,
    active BIGINT NOT NULL DEFAULT 1,
    data JSONB NOT NULL,
    created TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    -- set when the user is deleted over SCIM: the row stays (disabled) for the record, invisible to SCIM
    deleted_at TEXT
);
CREATE UNIQUE INDEX users_user_name_key ON users (user_name_key) WHERE deleted_at IS NULL;
CREATE INDEX users_external_id ON users (external_id);
CREATE INDEX users_last_modified ON users (last_modified);

CREATE TABLE teams (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    handle TEXT NOT NULL UNIQUE,
    -- the SCIM Group id while the team is managed by an identity provider; NULL when unmanaged
    scim_id TEXT UNIQUE,
    external_id TEXT,
    data JSONB NOT NULL,
    created TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX teams_name ON teams (name);
CREATE INDEX teams_name_lower ON teams (lower(name));
CREATE INDEX teams_external_id ON teams (external_id);

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE api_keys (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- 'service_account' or 'user'
    owner_kind TEXT NOT NULL,
    owner_user_id TEXT REFERENCES users (id),
    -- SHA-256 of the secret, hex; the secret itself is never stored
    secret_hash TEXT NOT NULL UNIQUE,
    -- first characters of the secret, to recognise a key in listings
    hint TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked_at TEXT,
    revoked_reason TEXT
);
CREATE INDEX api_keys_owner ON api_keys (owner_user_id);

CREATE TABLE audit_events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    request_id TEXT,
    details JSONB NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_target ON audit_events (target_id);
CREATE INDEX audit_events_action ON audit_events (action);
