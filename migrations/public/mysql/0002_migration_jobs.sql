-- Fleet jobs and their per-tenant outcomes, so a job can be inspected and resumed.

CREATE TABLE migration_jobs (
    id CHAR(36) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    state VARCHAR(16) NOT NULL,
    dry_run BOOLEAN NOT NULL DEFAULT FALSE,
    continue_on_error BOOLEAN NOT NULL DEFAULT FALSE,
    concurrency BIGINT NOT NULL,
    target_version BIGINT NULL,
    requested_by VARCHAR(254) NULL,
    owner VARCHAR(128) NULL,
    -- Non-NULL while a job holds its kind's single slot (one fleet job at a time).
    active_slot VARCHAR(32) NULL UNIQUE,
    total BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    not_attempted BIGINT NOT NULL DEFAULT 0,
    error TEXT NULL,
    created_at DATETIME(6) NOT NULL,
    started_at DATETIME(6) NULL,
    heartbeat_at DATETIME(6) NULL,
    finished_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    KEY ix_migration_jobs_state (state, created_at),
    KEY ix_migration_jobs_created (created_at),
    CONSTRAINT ck_migration_jobs_state CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE migration_job_tenants (
    job_id CHAR(36) NOT NULL,
    schema_name VARCHAR(63) NOT NULL,
    status VARCHAR(16) NOT NULL,
    from_version BIGINT NULL,
    to_version BIGINT NULL,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT NULL,
    finished_at DATETIME(6) NOT NULL,
    PRIMARY KEY (job_id, schema_name),
    CONSTRAINT fk_migration_job_tenants_job FOREIGN KEY (job_id) REFERENCES migration_jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
