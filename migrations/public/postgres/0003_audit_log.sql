-- Who did what, when. Never secrets.

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    actor varchar(254) NOT NULL,
    action varchar(64) NOT NULL,
    target varchar(255) NULL,
    outcome varchar(16) NOT NULL,
    detail text NULL,
    request_id varchar(64) NULL
);

CREATE INDEX ix_audit_log_at ON audit_log (at);
CREATE INDEX ix_audit_log_actor ON audit_log (actor, at);
