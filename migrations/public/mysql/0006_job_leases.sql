-- Leases of fleet jobs. lease_expires_at: until when the owner holds the job (its heartbeat
-- moves it forward, on the database server's clock); once it is past, a live replica takes
-- the job over (state stays 'running', owner changes) and continues it with the tenants not
-- yet finished. A graceful shutdown hands its job off by setting it to now. takeovers: how
-- many times the job changed hands that way. Jobs running when this migration is applied
-- fall back on their heartbeat.

ALTER TABLE migration_jobs
    ADD COLUMN lease_expires_at DATETIME(6) NULL,
    ADD COLUMN takeovers BIGINT NOT NULL DEFAULT 0;
