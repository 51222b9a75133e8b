-- The tenant schema as it should be (sqlite): the desired state `tenant-migrator diff --scope tenant`
-- compares the migrations with. Edit this file, run diff, review the migration it writes.

CREATE TABLE "appointments" (
    "id" text NOT NULL,
    "client_id" text NOT NULL,
    "professional_id" text NOT NULL,
    "service_id" text NOT NULL,
    "appointment_date" text NOT NULL,
    "start_time" text NOT NULL,
    "end_time" text NOT NULL,
    "status" text NOT NULL DEFAULT 'SCHEDULED',
    "price_at_booking" numeric NOT NULL,
    "notes_by_client" text,
    "notes_by_professional" text,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    "updated_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY ("id"),
    CHECK (end_time > start_time),
    CHECK (length(id) = 36),
    CHECK (status in ('SCHEDULED', 'CONFIRMED', 'CANCELLED', 'COMPLETED', 'NO_SHOW')),
    FOREIGN KEY ("client_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT,
    FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT,
    FOREIGN KEY ("service_id") REFERENCES "services" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT
);

CREATE INDEX "ix_appointments_client_date" ON "appointments" ("client_id", "appointment_date");

CREATE INDEX "ix_appointments_date_status" ON "appointments" ("appointment_date", "status");

CREATE INDEX "ix_appointments_professional_time" ON "appointments" ("professional_id", "appointment_date", "start_time");

CREATE INDEX "ix_appointments_service" ON "appointments" ("service_id");

CREATE TABLE "professional_availabilities" (
    "id" text NOT NULL,
    "professional_id" text NOT NULL,
    "day_of_week" integer NOT NULL,
    "start_time" text NOT NULL,
    "end_time" text NOT NULL,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY ("id"),
    UNIQUE ("professional_id", "day_of_week", "start_time"),
    CHECK (day_of_week between 0 and 6),
    CHECK (end_time > start_time),
    CHECK (length(id) = 36),
    FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE CASCADE
);

CREATE TABLE "professional_blocked_times" (
    "id" text NOT NULL,
    "professional_id" text NOT NULL,
    "blocked_date" text NOT NULL,
    "start_time" text NOT NULL,
    "end_time" text NOT NULL,
    "block_type" text NOT NULL DEFAULT 'OTHER',
    "reason" text,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY ("id"),
    CHECK (block_type in ('VACATION', 'SICK_LEAVE', 'PERSONAL', 'OTHER')),
    CHECK (end_time > start_time),
    CHECK (length(id) = 36),
    CHECK (length(reason) <= 255),
    FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE CASCADE
);

CREATE INDEX "ix_professional_blocked_times_date" ON "professional_blocked_times" ("professional_id", "blocked_date");

CREATE TABLE "professional_breaks" (
    "id" text NOT NULL,
    "professional_id" text NOT NULL,
    "day_of_week" integer NOT NULL,
    "start_time" text NOT NULL,
    "end_time" text NOT NULL,
    "name" text,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY ("id"),
    CHECK (day_of_week between 0 and 6),
    CHECK (end_time > start_time),
    CHECK (length(id) = 36),
    CHECK (length(name) <= 100),
    FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE CASCADE
);

CREATE INDEX "ix_professional_breaks_day" ON "professional_breaks" ("professional_id", "day_of_week");

CREATE TABLE "service_categories" (
    "id" text NOT NULL,
    "name" text NOT NULL,
    "description" text,
    "display_order" integer NOT NULL DEFAULT 0,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY ("id"),
    UNIQUE ("name"),
    CHECK (length(description) <= 500),
    CHECK (length(id) = 36),
    CHECK (length(name) <= 100)
);

CREATE TABLE "services" (
    "id" text NOT NULL,
    "category_id" text NOT NULL,
    "name" text NOT NULL,
    "description" text,
    "duration_minutes" integer NOT NULL,
    "price" numeric NOT NULL,
    "commission_percentage" numeric,
    "is_active" integer NOT NULL DEFAULT 1,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    "updated_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY ("id"),
    CHECK (duration_minutes > 0),
    CHECK (length(id) = 36),
    CHECK (length(name) <= 150),
    CHECK (price >= 0),
    FOREIGN KEY ("category_id") REFERENCES "service_categories" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT
);

CREATE INDEX "ix_services_category" ON "services" ("category_id", "is_active");

CREATE TABLE "users_tenant" (
    "id" text NOT NULL,
    "email" text NOT NULL,
    "hashed_password" text NOT NULL,
    "full_name" text,
    "phone_number" text,
    "role" text NOT NULL DEFAULT 'CLIENTE',
    "is_active" integer NOT NULL DEFAULT 1,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    "updated_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY ("id"),
    UNIQUE ("email"),
    CHECK (length(email) <= 255),
    CHECK (length(full_name) <= 255),
    CHECK (length(id) = 36),
    CHECK (length(phone_number) <= 32),
    CHECK (role in ('CLIENTE', 'PROFISSIONAL', 'ATENDENTE', 'GESTOR'))
);

CREATE INDEX "ix_users_tenant_role" ON "users_tenant" ("role", "is_active");

