-- Canary waves and a failure budget of fleet jobs: what the job asked for (kept for a
-- resume), and, once it ends, its waves and why it halted ('canary_failed', 'max_failures').
-- cancel_requested: a cancel asked on any replica, which the job's owner reads with its
-- heartbeat and obeys at the next tenant boundary. migration_job_tenants.owner: the replica
-- that ran the tenant (a job taken over runs on more than one).

ALTER TABLE migration_jobs
    ADD COLUMN canary bigint NULL,
    ADD COLUMN canary_tenants text NULL,
    ADD COLUMN max_failures bigint NULL,
    ADD COLUMN halted varchar(32) NULL,
    ADD COLUMN waves text NULL,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

ALTER TABLE migration_job_tenants ADD COLUMN owner varchar(64) NULL;
