-- Canary waves and a failure budget of fleet jobs: what the job asked for (kept for a
-- resume), and, once it ends, its waves and why it halted ('canary_failed', 'max_failures').
-- cancel_requested: a cancel asked on any replica, which the job's owner reads with its
-- heartbeat and obeys at the next tenant boundary. migration_job_tenants.owner: the replica
-- that ran the tenant (a job taken over runs on more than one).

ALTER TABLE migration_jobs ADD COLUMN canary INTEGER NULL;
ALTER TABLE migration_jobs ADD COLUMN canary_tenants TEXT NULL;
ALTER TABLE migration_jobs ADD COLUMN max_failures INTEGER NULL;
ALTER TABLE migration_jobs ADD COLUMN halted TEXT NULL;
ALTER TABLE migration_jobs ADD COLUMN waves TEXT NULL;
ALTER TABLE migration_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE migration_job_tenants ADD COLUMN owner TEXT NULL;
