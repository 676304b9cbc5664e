-- depends: 0011.operators
-- Operator sessions by way of the browser (issue #6): a session is either a bearer token
-- for API clients or an HttpOnly cookie of the /ops pages. A cookie session is never
-- accepted as a bearer token and the other way round, and a cookie session's
-- state-changing requests always need its CSRF token (api/deps.py).

ALTER TABLE operator_sessions
    ADD COLUMN via text NOT NULL DEFAULT 'bearer' CHECK (via IN ('bearer', 'cookie'));
