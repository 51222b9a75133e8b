-- TorriApps tenant schema, part 2: bookings.

CREATE TABLE appointments (
    id TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    client_id TEXT NOT NULL REFERENCES users_tenant (id) ON DELETE RESTRICT,
    professional_id TEXT NOT NULL REFERENCES users_tenant (id) ON DELETE RESTRICT,
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
    appointment_date TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'SCHEDULED'
        CHECK (status IN ('SCHEDULED', 'CONFIRMED', 'CANCELLED', 'COMPLETED', 'NO_SHOW')),
    price_at_booking NUMERIC NOT NULL,
    notes_by_client TEXT NULL,
    notes_by_professional TEXT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (end_time > start_time)
);

CREATE INDEX ix_appointments_professional_time ON appointments (professional_id, appointment_date, start_time);
CREATE INDEX ix_appointments_client_date ON appointments (client_id, appointment_date);
CREATE INDEX ix_appointments_service ON appointments (service_id);
CREATE INDEX ix_appointments_date_status ON appointments (appointment_date, status);
