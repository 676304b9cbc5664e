-- depends: 0001.schema
-- Operator accounts with roles, their bearer sessions, the audit of what they changed, and
-- the failed-login counters shared by every API process (portal customers, operators, IPs).

CREATE TABLE operators (
    username       text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    password_hash  text NOT NULL,
    roles          text[] NOT NULL
                   CHECK (roles <@ ARRAY['clerk', 'billing', 'legal', 'admin']::text[]),
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL
);

-- The bearer token is given once at login; only its SHA-256 is kept.
CREATE TABLE operator_sessions (
    token_sha256   text PRIMARY KEY,
    username       text NOT NULL REFERENCES operators ON DELETE CASCADE,
    created_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX operator_sessions_user ON operator_sessions (username);

-- operator: a username, or 'operator_token' for the break-glass bearer token.
CREATE TABLE operator_audit (
    audit_id   bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    operator   text NOT NULL,
    action     text NOT NULL,
    target     text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip         text
);
CREATE INDEX operator_audit_at ON operator_audit (at DESC, audit_id DESC);

-- scope: 'portal' / 'operator' (key = the login name as typed, known or not) or 'ip'.
CREATE TABLE login_throttle (
    scope            text NOT NULL CHECK (scope IN ('portal', 'operator', 'ip')),
    key              text NOT NULL,
    failures         integer NOT NULL,
    window_start     timestamptz NOT NULL,
    locked_until     timestamptz,
    lockouts         integer NOT NULL DEFAULT 0,
    last_failure_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX login_throttle_quiet ON login_throttle (last_failure_at);
