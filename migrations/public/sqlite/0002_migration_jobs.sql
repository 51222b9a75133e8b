-- Fleet jobs and their per-tenant outcomes, so a job can be inspected and resumed.

CREATE TABLE migration_jobs (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    dry_run INTEGER NOT NULL DEFAULT 0,
    continue_on_error INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER NOT NULL,
    target_version INTEGER NULL,
    requested_by TEXT NULL,
    owner TEXT NULL,
    -- Non-NULL while a job holds its kind's single slot (one fleet job at a time).
    active_slot TEXT NULL UNIQUE,
    total INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    not_attempted INTEGER NOT NULL DEFAULT 0,
    error TEXT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT NULL,
    heartbeat_at TEXT NULL,
    finished_at TEXT NULL
);

CREATE INDEX ix_migration_jobs_state ON migration_jobs (state, created_at);
CREATE INDEX ix_migration_jobs_created ON migration_jobs (created_at);

CREATE TABLE migration_job_tenants (
    job_id TEXT NOT NULL REFERENCES migration_jobs (id) ON DELETE CASCADE,
    schema_name TEXT NOT NULL,
    status TEXT NOT NULL,
    from_version INTEGER NULL,
    to_version INTEGER NULL,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (job_id, schema_name)
);
