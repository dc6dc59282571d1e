-- The recent provisioning requests (/scim/v2 and /api/v1) every replica answered, for the
-- console's "Recent provisioning requests" page: what an administrator looks at when an
-- identity provider's push fails. Never a body, a header, a query string or a secret: the
-- method, the path (which may hold a resource id), the status, which key (id and name, never
-- its secret), the latency. Bounded: each write prunes the table to the newest rows the server
-- is told to keep (--request-log-size). Not copied by `migrate`.

CREATE TABLE provisioning_requests (
    seq BIGSERIAL PRIMARY KEY,
    -- when the request arrived (RFC 3339, UTC)
    time TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    -- the key that authenticated the request; NULL when none did (a 401)
    key_id TEXT,
    key_name TEXT,
    duration_us BIGINT NOT NULL,
    request_id TEXT
);
CREATE INDEX provisioning_requests_status ON provisioning_requests (status);
CREATE INDEX provisioning_requests_key ON provisioning_requests (key_id);
