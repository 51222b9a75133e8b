-- TorriApps tenant schema, part 2: bookings.

CREATE TABLE appointments (
    id CHAR(36) NOT NULL,
    client_id CHAR(36) NOT NULL,
    professional_id CHAR(36) NOT NULL,
    service_id CHAR(36) NOT NULL,
    appointment_date DATE NOT NULL,
    start_time TIME NOT NULL,
    end_time TIME NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'SCHEDULED',
    price_at_booking DECIMAL(10, 2) NOT NULL,
    notes_by_client TEXT NULL,
    notes_by_professional TEXT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY ix_appointments_professional_time (professional_id, appointment_date, start_time),
    KEY ix_appointments_client_date (client_id, appointment_date),
    KEY ix_appointments_service (service_id),
    KEY ix_appointments_date_status (appointment_date, status),
    CONSTRAINT fk_appointments_client FOREIGN KEY (client_id) REFERENCES users_tenant (id) ON DELETE RESTRICT,
    CONSTRAINT fk_appointments_professional FOREIGN KEY (professional_id) REFERENCES users_tenant (id) ON DELETE RESTRICT,
    CONSTRAINT fk_appointments_service FOREIGN KEY (service_id) REFERENCES services (id) ON DELETE RESTRICT,
    CONSTRAINT ck_appointments_status CHECK (status IN ('SCHEDULED', 'CONFIRMED', 'CANCELLED', 'COMPLETED', 'NO_SHOW')),
    CONSTRAINT ck_appointments_times CHECK (end_time > start_time)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
