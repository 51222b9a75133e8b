-- TorriApps tenant schema, part 1: the salon's users and the services it sells.

CREATE TABLE users_tenant (
    id TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    email TEXT NOT NULL UNIQUE CHECK (length(email) <= 255),
    hashed_password TEXT NOT NULL,
    full_name TEXT NULL CHECK (length(full_name) <= 255),
    phone_number TEXT NULL CHECK (length(phone_number) <= 32),
    role TEXT NOT NULL DEFAULT 'CLIENTE' CHECK (role IN ('CLIENTE', 'PROFISSIONAL', 'ATENDENTE', 'GESTOR')),
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX ix_users_tenant_role ON users_tenant (role, is_active);

CREATE TABLE service_categories (
    id TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    name TEXT NOT NULL UNIQUE CHECK (length(name) <= 100),
    description TEXT NULL CHECK (length(description) <= 500),
    display_order INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE services (
    id TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    category_id TEXT NOT NULL REFERENCES service_categories (id) ON DELETE RESTRICT,
    name TEXT NOT NULL CHECK (length(name) <= 150),
    description TEXT NULL,
    duration_minutes INTEGER NOT NULL CHECK (duration_minutes > 0),
    price NUMERIC NOT NULL CHECK (price >= 0),
    commission_percentage NUMERIC NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX ix_services_category ON services (category_id, is_active);
