-- Fleet jobs and their per-tenant outcomes, so a job can be inspected and resumed.

CREATE TABLE migration_jobs (
    id uuid NOT NULL PRIMARY KEY,
    kind varchar(32) NOT NULL,
    state varchar(16) NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    dry_run boolean NOT NULL DEFAULT false,
    continue_on_error boolean NOT NULL DEFAULT false,
    concurrency bigint NOT NULL,
    target_version bigint NULL,
    requested_by varchar(254) NULL,
    owner varchar(128) NULL,
    -- Non-NULL while a job holds its kind's single slot (one fleet job at a time).
    active_slot varchar(32) NULL UNIQUE,
    total bigint NOT NULL DEFAULT 0,
    succeeded bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    skipped bigint NOT NULL DEFAULT 0,
    not_attempted bigint NOT NULL DEFAULT 0,
    error text NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz NULL,
    heartbeat_at timestamptz NULL,
    finished_at timestamptz NULL
);

CREATE INDEX ix_migration_jobs_state ON migration_jobs (state, created_at);
CREATE INDEX ix_migration_jobs_created ON migration_jobs (created_at);

CREATE TABLE migration_job_tenants (
    job_id uuid NOT NULL REFERENCES migration_jobs (id) ON DELETE CASCADE,
    schema_name varchar(63) NOT NULL,
    status varchar(16) NOT NULL,
    from_version bigint NULL,
    to_version bigint NULL,
    duration_ms bigint NOT NULL DEFAULT 0,
    attempts bigint NOT NULL DEFAULT 0,
    error text NULL,
    finished_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, schema_name)
);
