-- TorriApps tenant schema, part 2: bookings.

CREATE TABLE appointments (
    id uuid NOT NULL PRIMARY KEY,
    client_id uuid NOT NULL REFERENCES users_tenant (id) ON DELETE RESTRICT,
    professional_id uuid NOT NULL REFERENCES users_tenant (id) ON DELETE RESTRICT,
    service_id uuid NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
    appointment_date date NOT NULL,
    start_time time NOT NULL,
    end_time time NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'SCHEDULED'
        CHECK (status IN ('SCHEDULED', 'CONFIRMED', 'CANCELLED', 'COMPLETED', 'NO_SHOW')),
    price_at_booking numeric(10, 2) NOT NULL,
    notes_by_client text NULL,
    notes_by_professional text NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (end_time > start_time)
);

CREATE INDEX ix_appointments_professional_time ON appointments (professional_id, appointment_date, start_time);
CREATE INDEX ix_appointments_client_date ON appointments (client_id, appointment_date);
CREATE INDEX ix_appointments_service ON appointments (service_id);
CREATE INDEX ix_appointments_date_status ON appointments (appointment_date, status);
