-- TorriApps tenant schema, part 3: when professionals work, pause and are away.

CREATE TABLE professional_availabilities (
    id uuid NOT NULL PRIMARY KEY,
    professional_id uuid NOT NULL REFERENCES users_tenant (id) ON DELETE CASCADE,
    day_of_week smallint NOT NULL CHECK (day_of_week BETWEEN 0 AND 6),
    start_time time NOT NULL,
    end_time time NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (professional_id, day_of_week, start_time),
    CHECK (end_time > start_time)
);

CREATE TABLE professional_breaks (
    id uuid NOT NULL PRIMARY KEY,
    professional_id uuid NOT NULL REFERENCES users_tenant (id) ON DELETE CASCADE,
    day_of_week smallint NOT NULL CHECK (day_of_week BETWEEN 0 AND 6),
    start_time time NOT NULL,
    end_time time NOT NULL,
    name varchar(100) NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);

CREATE INDEX ix_professional_breaks_day ON professional_breaks (professional_id, day_of_week);

CREATE TABLE professional_blocked_times (
    id uuid NOT NULL PRIMARY KEY,
    professional_id uuid NOT NULL REFERENCES users_tenant (id) ON DELETE CASCADE,
    blocked_date date NOT NULL,
    start_time time NOT NULL,
    end_time time NOT NULL,
    block_type varchar(20) NOT NULL DEFAULT 'OTHER'
        CHECK (block_type IN ('VACATION', 'SICK_LEAVE', 'PERSONAL', 'OTHER')),
    reason varchar(255) NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);

CREATE INDEX ix_professional_blocked_times_date ON professional_blocked_times (professional_id, blocked_date);
