-- Catalog: the tenants of the platform and the admin master users who run it.

CREATE TABLE tenants (
    id uuid NOT NULL PRIMARY KEY,
    schema_name varchar(63) NOT NULL UNIQUE,
    display_name varchar(255) NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'active', 'failed', 'archived')),
    server varchar(64) NOT NULL DEFAULT 'default',
    schema_version bigint NULL,
    last_error text NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX ix_tenants_status ON tenants (status, schema_name);

CREATE TABLE admin_master_users (
    id uuid NOT NULL PRIMARY KEY,
    email varchar(254) NOT NULL UNIQUE,
    password_hash varchar(255) NOT NULL,
    role varchar(16) NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'operator', 'viewer')),
    is_active boolean NOT NULL DEFAULT true,
    failed_logins bigint NOT NULL DEFAULT 0,
    locked_until timestamptz NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
