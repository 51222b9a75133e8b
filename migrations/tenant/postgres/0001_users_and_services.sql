-- TorriApps tenant schema, part 1: the salon's users and the services it sells.

CREATE TABLE users_tenant (
    id uuid NOT NULL PRIMARY KEY,
    email varchar(255) NOT NULL UNIQUE,
    hashed_password varchar(255) NOT NULL,
    full_name varchar(255) NULL,
    phone_number varchar(32) NULL,
    role varchar(20) NOT NULL DEFAULT 'CLIENTE'
        CHECK (role IN ('CLIENTE', 'PROFISSIONAL', 'ATENDENTE', 'GESTOR')),
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ix_users_tenant_role ON users_tenant (role, is_active);

CREATE TABLE service_categories (
    id uuid NOT NULL PRIMARY KEY,
    name varchar(100) NOT NULL UNIQUE,
    description varchar(500) NULL,
    display_order integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE services (
    id uuid NOT NULL PRIMARY KEY,
    category_id uuid NOT NULL REFERENCES service_categories (id) ON DELETE RESTRICT,
    name varchar(150) NOT NULL,
    description text NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes > 0),
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    commission_percentage numeric(5, 2) NULL,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ix_services_category ON services (category_id, is_active);
