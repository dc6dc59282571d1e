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

-- Role catalog: built-in roles have fixed ids; one role may be the default.
CREATE TABLE roles (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    builtin BIGINT NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL
);

-- Server-wide settings (e.g. the default role).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT
);

-- Effective roles of each user and why it has them ('scim', 'mapping', 'default', 'kept').
CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role ON user_roles (role_id);

-- Role mapping rules: members of the named teams receive the roles.
CREATE TABLE role_mappings (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    external_id TEXT,
    data JSONB NOT NULL,
    created TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX role_mappings_name ON role_mappings (lower(display_name));

CREATE TABLE role_mapping_roles (
    mapping_id TEXT NOT NULL REFERENCES role_mappings (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (mapping_id, role_id)
);

CREATE TABLE role_mapping_teams (
    mapping_id TEXT NOT NULL REFERENCES role_mappings (id) ON DELETE CASCADE,
    team_name TEXT NOT NULL,
    PRIMARY KEY (mapping_id, team_name)
);
CREATE INDEX role_mapping_teams_name ON role_mapping_teams (team_name);

-- Invitations: a link valid for a limited time; only the hash of its token is kept.
CREATE TABLE invitations (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    created TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    -- 'pending', 'accepted', 'cancelled'
    status TEXT NOT NULL,
    status_at TEXT
);
CREATE INDEX invitations_user ON invitations (user_id);

-- Messages waiting for delivery (e-mail), written in the same transaction as their cause.
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at TEXT
);
CREATE INDEX outbox_pending ON outbox (sent_at);

INSERT INTO roles (id, name, name_key, builtin, description, created) VALUES
    ('7a1d0000-0000-4000-8000-000000000001', 'Admin', 'admin', 1, 'Full access, including user and role management', '1970-01-01T00:00:00.000Z'),
    ('7a1d0000-0000-4000-8000-000000000002', 'Standard', 'standard', 1, 'Read and write access to the product, no administration', '1970-01-01T00:00:00.000Z'),
    ('7a1d0000-0000-4000-8000-000000000003', 'Read Only', 'read only', 1, 'Read access only', '1970-01-01T00:00:00.000Z');
INSERT INTO settings (name, value) VALUES ('default_role', '7a1d0000-0000-4000-8000-000000000002');
