-- Catalog: the tenants of the platform and the admin master users who run it.

CREATE TABLE tenants (
    id CHAR(36) NOT NULL,
    schema_name VARCHAR(63) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'provisioning',
    server VARCHAR(64) NOT NULL DEFAULT 'default',
    schema_version BIGINT NULL,
    last_error TEXT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    -- Clustered by schema name: every lookup and every page goes by it.
    PRIMARY KEY (schema_name),
    UNIQUE KEY uq_tenants_id (id),
    KEY ix_tenants_status (status, schema_name),
    CONSTRAINT ck_tenants_status CHECK (status IN ('provisioning', 'active', 'failed', 'archived'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE admin_master_users (
    id CHAR(36) NOT NULL,
    email VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(16) NOT NULL DEFAULT 'viewer',
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_admin_master_users_email (email),
    CONSTRAINT ck_admin_master_users_role CHECK (role IN ('admin', 'operator', 'viewer'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
