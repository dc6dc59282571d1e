-- The console's sign-in state: server-side sessions, OpenID Connect sign-ins under way, and
-- single-use sign-in links made on the command line. Only SHA-256 hashes of what a browser
-- holds (session id, sign-in flow id, link token) are stored, so a copy of the database signs
-- nobody in. Rows are short-lived and are not copied by `migrate` (people sign in again).

CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    -- the token every form of this session carries
    csrf_token TEXT NOT NULL,
    -- 'oidc' or 'link'
    method TEXT NOT NULL,
    created TEXT NOT NULL,
    -- the idle timeout counts from here
    last_seen TEXT NOT NULL,
    -- the absolute timeout
    expires_at TEXT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

CREATE TABLE console_signin_flows (
    flow_hash TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX console_signin_flows_expires ON console_signin_flows (expires_at);

CREATE TABLE console_login_links (
    token_hash TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    created TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
