-- TorriApps tenant schema, part 3: when professionals work, pause and are away.

CREATE TABLE professional_availabilities (
    id TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    professional_id TEXT NOT NULL REFERENCES users_tenant (id) ON DELETE CASCADE,
    day_of_week INTEGER NOT NULL CHECK (day_of_week BETWEEN 0 AND 6),
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (professional_id, day_of_week, start_time),
    CHECK (end_time > start_time)
);

CREATE TABLE professional_breaks (
    id TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    professional_id TEXT NOT NULL REFERENCES users_tenant (id) ON DELETE CASCADE,
    day_of_week INTEGER NOT NULL CHECK (day_of_week BETWEEN 0 AND 6),
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    name TEXT NULL CHECK (length(name) <= 100),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (end_time > start_time)
);

CREATE INDEX ix_professional_breaks_day ON professional_breaks (professional_id, day_of_week);

CREATE TABLE professional_blocked_times (
    id TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    professional_id TEXT NOT NULL REFERENCES users_tenant (id) ON DELETE CASCADE,
    blocked_date TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    block_type TEXT NOT NULL DEFAULT 'OTHER'
        CHECK (block_type IN ('VACATION', 'SICK_LEAVE', 'PERSONAL', 'OTHER')),
    reason TEXT NULL CHECK (length(reason) <= 255),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (end_time > start_time)
);

CREATE INDEX ix_professional_blocked_times_date ON professional_blocked_times (professional_id, blocked_date);
