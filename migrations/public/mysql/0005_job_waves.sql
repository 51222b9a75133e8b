-- Canary waves and a failure budget of fleet jobs: what the job asked for (kept for a
-- resume), and, once it ends, its waves and why it halted ('canary_failed', 'max_failures').

ALTER TABLE migration_jobs
    ADD COLUMN canary BIGINT NULL,
    ADD COLUMN canary_tenants MEDIUMTEXT NULL,
    ADD COLUMN max_failures BIGINT NULL,
    ADD COLUMN halted VARCHAR(32) NULL,
    ADD COLUMN waves MEDIUMTEXT NULL;
