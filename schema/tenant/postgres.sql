-- The tenant schema as it should be (postgres): the desired state `tenant-migrator diff --scope tenant`
-- compares the migrations with. Edit this file, run diff, review the migration it writes.

CREATE TABLE "appointments" (
    "id" uuid NOT NULL,
    "client_id" uuid NOT NULL,
    "professional_id" uuid NOT NULL,
    "service_id" uuid NOT NULL,
    "appointment_date" date NOT NULL,
    "start_time" time without time zone NOT NULL,
    "end_time" time without time zone NOT NULL,
    "status" character varying(20) NOT NULL DEFAULT 'SCHEDULED'::character varying,
    "price_at_booking" numeric(10,2) NOT NULL,
    "notes_by_client" text,
    "notes_by_professional" text,
    "created_at" timestamp with time zone NOT NULL DEFAULT now(),
    "updated_at" timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT "appointments_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "appointments_check" CHECK (end_time > start_time),
    CONSTRAINT "appointments_status_check" CHECK (status::text = ANY (ARRAY['SCHEDULED'::character varying, 'CONFIRMED'::character varying, 'CANCELLED'::character varying, 'COMPLETED'::character varying, 'NO_SHOW'::character varying]::text[]))
);

CREATE INDEX "ix_appointments_client_date" ON "appointments" ("client_id", "appointment_date");

CREATE INDEX "ix_appointments_date_status" ON "appointments" ("appointment_date", "status");

CREATE INDEX "ix_appointments_professional_time" ON "appointments" ("professional_id", "appointment_date", "start_time");

CREATE INDEX "ix_appointments_service" ON "appointments" ("service_id");

CREATE TABLE "professional_availabilities" (
    "id" uuid NOT NULL,
    "professional_id" uuid NOT NULL,
    "day_of_week" smallint NOT NULL,
    "start_time" time without time zone NOT NULL,
    "end_time" time without time zone NOT NULL,
    "created_at" timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT "professional_availabilities_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "professional_availabilities_professional_id_day_of_week_sta_key" UNIQUE ("professional_id", "day_of_week", "start_time"),
    CONSTRAINT "professional_availabilities_check" CHECK (end_time > start_time),
    CONSTRAINT "professional_availabilities_day_of_week_check" CHECK (day_of_week >= 0 AND day_of_week <= 6)
);

CREATE TABLE "professional_blocked_times" (
    "id" uuid NOT NULL,
    "professional_id" uuid NOT NULL,
    "blocked_date" date NOT NULL,
    "start_time" time without time zone NOT NULL,
    "end_time" time without time zone NOT NULL,
    "block_type" character varying(20) NOT NULL DEFAULT 'OTHER'::character varying,
    "reason" character varying(255),
    "created_at" timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT "professional_blocked_times_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "professional_blocked_times_block_type_check" CHECK (block_type::text = ANY (ARRAY['VACATION'::character varying, 'SICK_LEAVE'::character varying, 'PERSONAL'::character varying, 'OTHER'::character varying]::text[])),
    CONSTRAINT "professional_blocked_times_check" CHECK (end_time > start_time)
);

CREATE INDEX "ix_professional_blocked_times_date" ON "professional_blocked_times" ("professional_id", "blocked_date");

CREATE TABLE "professional_breaks" (
    "id" uuid NOT NULL,
    "professional_id" uuid NOT NULL,
    "day_of_week" smallint NOT NULL,
    "start_time" time without time zone NOT NULL,
    "end_time" time without time zone NOT NULL,
    "name" character varying(100),
    "created_at" timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT "professional_breaks_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "professional_breaks_check" CHECK (end_time > start_time),
    CONSTRAINT "professional_breaks_day_of_week_check" CHECK (day_of_week >= 0 AND day_of_week <= 6)
);

CREATE INDEX "ix_professional_breaks_day" ON "professional_breaks" ("professional_id", "day_of_week");

CREATE TABLE "service_categories" (
    "id" uuid NOT NULL,
    "name" character varying(100) NOT NULL,
    "description" character varying(500),
    "display_order" integer NOT NULL DEFAULT 0,
    "created_at" timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT "service_categories_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "service_categories_name_key" UNIQUE ("name")
);

CREATE TABLE "services" (
    "id" uuid NOT NULL,
    "category_id" uuid NOT NULL,
    "name" character varying(150) NOT NULL,
    "description" text,
    "duration_minutes" integer NOT NULL,
    "price" numeric(10,2) NOT NULL,
    "commission_percentage" numeric(5,2),
    "is_active" boolean NOT NULL DEFAULT true,
    "created_at" timestamp with time zone NOT NULL DEFAULT now(),
    "updated_at" timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT "services_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "services_duration_minutes_check" CHECK (duration_minutes > 0),
    CONSTRAINT "services_price_check" CHECK (price >= 0::numeric)
);

CREATE INDEX "ix_services_category" ON "services" ("category_id", "is_active");

CREATE TABLE "users_tenant" (
    "id" uuid NOT NULL,
    "email" character varying(255) NOT NULL,
    "hashed_password" character varying(255) NOT NULL,
    "full_name" character varying(255),
    "phone_number" character varying(32),
    "role" character varying(20) NOT NULL DEFAULT 'CLIENTE'::character varying,
    "is_active" boolean NOT NULL DEFAULT true,
    "created_at" timestamp with time zone NOT NULL DEFAULT now(),
    "updated_at" timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT "users_tenant_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "users_tenant_email_key" UNIQUE ("email"),
    CONSTRAINT "users_tenant_role_check" CHECK (role::text = ANY (ARRAY['CLIENTE'::character varying, 'PROFISSIONAL'::character varying, 'ATENDENTE'::character varying, 'GESTOR'::character varying]::text[]))
);

CREATE INDEX "ix_users_tenant_role" ON "users_tenant" ("role", "is_active");

ALTER TABLE "appointments" ADD CONSTRAINT "appointments_client_id_fkey" FOREIGN KEY ("client_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT;

ALTER TABLE "appointments" ADD CONSTRAINT "appointments_professional_id_fkey" FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT;

ALTER TABLE "appointments" ADD CONSTRAINT "appointments_service_id_fkey" FOREIGN KEY ("service_id") REFERENCES "services" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT;

ALTER TABLE "professional_availabilities" ADD CONSTRAINT "professional_availabilities_professional_id_fkey" FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE CASCADE;

ALTER TABLE "professional_blocked_times" ADD CONSTRAINT "professional_blocked_times_professional_id_fkey" FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE CASCADE;

ALTER TABLE "professional_breaks" ADD CONSTRAINT "professional_breaks_professional_id_fkey" FOREIGN KEY ("professional_id") REFERENCES "users_tenant" ("id") ON UPDATE NO ACTION ON DELETE CASCADE;

ALTER TABLE "services" ADD CONSTRAINT "services_category_id_fkey" FOREIGN KEY ("category_id") REFERENCES "service_categories" ("id") ON UPDATE NO ACTION ON DELETE RESTRICT;

