-- Who did what, when. Never secrets.

CREATE TABLE audit_log (
    id BIGINT NOT NULL AUTO_INCREMENT,
    at DATETIME(6) NOT NULL,
    actor VARCHAR(254) NOT NULL,
    action VARCHAR(64) NOT NULL,
    target VARCHAR(255) NULL,
    outcome VARCHAR(16) NOT NULL,
    detail TEXT NULL,
    request_id VARCHAR(64) NULL,
    PRIMARY KEY (id),
    KEY ix_audit_log_at (at),
    KEY ix_audit_log_actor (actor, at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
