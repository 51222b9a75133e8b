-- TorriApps tenant schema, part 3: when professionals work, pause and are away.

CREATE TABLE professional_availabilities (
    id CHAR(36) NOT NULL,
    professional_id CHAR(36) NOT NULL,
    day_of_week TINYINT NOT NULL,
    start_time TIME NOT NULL,
    end_time TIME NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY uq_professional_availabilities_slot (professional_id, day_of_week, start_time),
    CONSTRAINT fk_professional_availabilities_professional FOREIGN KEY (professional_id) REFERENCES users_tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_professional_availabilities_day CHECK (day_of_week BETWEEN 0 AND 6),
    CONSTRAINT ck_professional_availabilities_times CHECK (end_time > start_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE professional_breaks (
    id CHAR(36) NOT NULL,
    professional_id CHAR(36) NOT NULL,
    day_of_week TINYINT NOT NULL,
    start_time TIME NOT NULL,
    end_time TIME NOT NULL,
    name VARCHAR(100) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY ix_professional_breaks_day (professional_id, day_of_week),
    CONSTRAINT fk_professional_breaks_professional FOREIGN KEY (professional_id) REFERENCES users_tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_professional_breaks_day CHECK (day_of_week BETWEEN 0 AND 6),
    CONSTRAINT ck_professional_breaks_times CHECK (end_time > start_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE professional_blocked_times (
    id CHAR(36) NOT NULL,
    professional_id CHAR(36) NOT NULL,
    blocked_date DATE NOT NULL,
    start_time TIME NOT NULL,
    end_time TIME NOT NULL,
    block_type VARCHAR(20) NOT NULL DEFAULT 'OTHER',
    reason VARCHAR(255) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY ix_professional_blocked_times_date (professional_id, blocked_date),
    CONSTRAINT fk_professional_blocked_times_professional FOREIGN KEY (professional_id) REFERENCES users_tenant (id) ON DELETE CASCADE,
    CONSTRAINT ck_professional_blocked_times_type CHECK (block_type IN ('VACATION', 'SICK_LEAVE', 'PERSONAL', 'OTHER')),
    CONSTRAINT ck_professional_blocked_times_times CHECK (end_time > start_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
