-- Canary waves and a failure budget of fleet jobs: what the job asked for (kept for a
-- resume), and, once it ends, its waves and why it halted ('canary_failed', 'max_failures').

ALTER TABLE migration_jobs ADD COLUMN canary INTEGER NULL;
ALTER TABLE migration_jobs ADD COLUMN canary_tenants TEXT NULL;
ALTER TABLE migration_jobs ADD COLUMN max_failures INTEGER NULL;
ALTER TABLE migration_jobs ADD COLUMN halted TEXT NULL;
ALTER TABLE migration_jobs ADD COLUMN waves TEXT NULL;
