//! The migrations the fault suite runs: a `MIGRATIONS_DIR` with the shipped catalog (public)
//! migrations — the folder replaces the embedded set as a whole — and three tenant versions
//! whose statements cover every kind with an observable effect (CREATE/DROP TABLE and VIEW,
//! ADD/DROP/MODIFY/RENAME COLUMN, ADD/DROP INDEX and KEY, ADD/DROP FOREIGN KEY, RENAME TABLE)
//! mixed with DML, some of which doubles when it runs twice (an INSERT without a key, an
//! `UPDATE … SET points = points + 10`), so that a re-run shows in the rows.

use std::path::Path;

/// Newest tenant version written by [`write`].
pub const LATEST: i64 = 3;

/// The event-log table's name before and after `0003` renames it; its `id` is generated and
/// left out of row comparisons (a killed INSERT may have consumed ids).
pub const LOG_TABLES: [&str; 2] = ["audit_events", "events"];

/// The most rows each event kind has at any point of the migrations (`0001` inserts two
/// `obsolete` rows that `0002` deletes): more means an INSERT ran twice.
pub const LOG_KIND_MAX: [(&str, usize); 4] = [
    ("created", 1),
    ("obsolete", 2),
    ("loyalty_seed", 2),
    ("rework", 1),
];

/// Every value a customer's points have at some point of the migrations (0 when the column
/// is added, +10 in `0002`, ×2+1 in `0003`): any other value means an UPDATE ran twice.
pub const POINTS_STAGES: [i64; 3] = [0, 10, 21];

const MYSQL: [(&str, &str); 3] = [
    (
        "0001_base.sql",
        "-- Fault suite, version 1: customers with a few rows, and an event log.

CREATE TABLE customers (
    id INT NOT NULL,
    name VARCHAR(100) NOT NULL,
    email VARCHAR(255) NULL,
    legacy_code VARCHAR(20) NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;

INSERT INTO customers (id, name, email, legacy_code) VALUES
    (1, 'Ana', 'ana@example.com', 'A-1'),
    (2, 'Bruno', 'bruno@example.com', 'B-2'),
    (3, 'Carla', NULL, 'C-3'),
    (4, 'Davi', 'davi@example.com', NULL);

CREATE TABLE audit_events (
    id INT NOT NULL AUTO_INCREMENT,
    kind VARCHAR(40) NOT NULL,
    at_version INT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;

INSERT INTO audit_events (kind, at_version) VALUES ('created', 1), ('obsolete', 1), ('obsolete', 1);
",
    ),
    (
        "0002_loyalty.sql",
        "-- Fault suite, version 2: fourteen statements, DDL and DML interleaved.

-- 1 ADD COLUMN
ALTER TABLE customers ADD COLUMN points INT NOT NULL DEFAULT 0;

-- 2 CREATE TABLE
CREATE TABLE tiers (
    id INT NOT NULL,
    name VARCHAR(40) NOT NULL,
    min_points INT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;

-- 3 INSERT (keyed: a second run fails on the key)
INSERT INTO tiers (id, name, min_points) VALUES (1, 'bronze', 0), (2, 'silver', 100), (3, 'gold', 500);

-- 4 INSERT (no key: a second run doubles the rows)
INSERT INTO audit_events (kind, at_version) VALUES ('loyalty_seed', 2), ('loyalty_seed', 2);

-- 5 UPDATE (a second run adds 10 more)
UPDATE customers SET points = points + 10;

-- 6 ADD INDEX
CREATE INDEX ix_customers_points ON customers (points);

-- 7 RENAME COLUMN
ALTER TABLE customers RENAME COLUMN legacy_code TO code;

-- 8 ADD COLUMN
ALTER TABLE customers ADD COLUMN tier_id INT NULL;

-- 9 UPDATE (idempotent)
UPDATE customers SET tier_id = 1;

-- 10 ADD FOREIGN KEY
ALTER TABLE customers ADD CONSTRAINT fk_customers_tier FOREIGN KEY (tier_id) REFERENCES tiers (id);

-- 11 MODIFY COLUMN
ALTER TABLE customers MODIFY COLUMN name VARCHAR(200) NOT NULL;

-- 12 DELETE
DELETE FROM audit_events WHERE kind = 'obsolete';

-- 13 CREATE VIEW
CREATE VIEW customer_points AS SELECT id, name, points FROM customers;

-- 14 DROP COLUMN
ALTER TABLE customers DROP COLUMN email;
",
    ),
    (
        "0003_rework.sql",
        "-- Fault suite, version 3: eleven statements, DDL and DML interleaved.

-- 1 RENAME TABLE
RENAME TABLE audit_events TO events;

-- 2 INSERT (no key)
INSERT INTO events (kind, at_version) VALUES ('rework', 3);

-- 3 DROP VIEW
DROP VIEW customer_points;

-- 4 DROP FOREIGN KEY
ALTER TABLE customers DROP FOREIGN KEY fk_customers_tier;

-- 5 DROP INDEX
DROP INDEX ix_customers_points ON customers;

-- 6 UPDATE (a second run doubles again)
UPDATE customers SET points = points * 2 + 1;

-- 7 ADD UNIQUE KEY
ALTER TABLE customers ADD UNIQUE KEY uq_customers_code (code);

-- 8 CREATE TABLE (with an index and a foreign key)
CREATE TABLE rewards (
    id INT NOT NULL,
    customer_id INT NOT NULL,
    label VARCHAR(60) NOT NULL,
    PRIMARY KEY (id),
    KEY ix_rewards_customer (customer_id),
    CONSTRAINT fk_rewards_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB;

-- 9 INSERT … SELECT (keyed)
INSERT INTO rewards (id, customer_id, label)
SELECT id, id, CONCAT('welcome-', code) FROM customers WHERE code IS NOT NULL;

-- 10 DROP TABLE
DROP TABLE tiers;

-- 11 DROP COLUMN
ALTER TABLE customers DROP COLUMN tier_id;
",
    ),
];

const POSTGRES: [(&str, &str); 3] = [
    (
        "0001_base.sql",
        "-- Fault suite, version 1: customers with a few rows, and an event log.

CREATE TABLE customers (
    id INT NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    email VARCHAR(255) NULL,
    legacy_code VARCHAR(20) NULL
);

INSERT INTO customers (id, name, email, legacy_code) VALUES
    (1, 'Ana', 'ana@example.com', 'A-1'),
    (2, 'Bruno', 'bruno@example.com', 'B-2'),
    (3, 'Carla', NULL, 'C-3'),
    (4, 'Davi', 'davi@example.com', NULL);

CREATE TABLE audit_events (
    id INT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind VARCHAR(40) NOT NULL,
    at_version INT NOT NULL
);

INSERT INTO audit_events (kind, at_version) VALUES ('created', 1), ('obsolete', 1), ('obsolete', 1);
",
    ),
    (
        "0002_loyalty.sql",
        "-- Fault suite, version 2: fourteen statements, DDL and DML interleaved.

ALTER TABLE customers ADD COLUMN points INT NOT NULL DEFAULT 0;

CREATE TABLE tiers (
    id INT NOT NULL PRIMARY KEY,
    name VARCHAR(40) NOT NULL,
    min_points INT NOT NULL
);

INSERT INTO tiers (id, name, min_points) VALUES (1, 'bronze', 0), (2, 'silver', 100), (3, 'gold', 500);

INSERT INTO audit_events (kind, at_version) VALUES ('loyalty_seed', 2), ('loyalty_seed', 2);

UPDATE customers SET points = points + 10;

CREATE INDEX ix_customers_points ON customers (points);

ALTER TABLE customers RENAME COLUMN legacy_code TO code;

ALTER TABLE customers ADD COLUMN tier_id INT NULL;

UPDATE customers SET tier_id = 1;

ALTER TABLE customers ADD CONSTRAINT fk_customers_tier FOREIGN KEY (tier_id) REFERENCES tiers (id);

ALTER TABLE customers ALTER COLUMN name TYPE VARCHAR(200);

DELETE FROM audit_events WHERE kind = 'obsolete';

CREATE VIEW customer_points AS SELECT id, name, points FROM customers;

ALTER TABLE customers DROP COLUMN email;
",
    ),
    (
        "0003_rework.sql",
        "-- Fault suite, version 3: twelve statements, DDL and DML interleaved.

ALTER TABLE audit_events RENAME TO events;

INSERT INTO events (kind, at_version) VALUES ('rework', 3);

DROP VIEW customer_points;

ALTER TABLE customers DROP CONSTRAINT fk_customers_tier;

DROP INDEX ix_customers_points;

UPDATE customers SET points = points * 2 + 1;

ALTER TABLE customers ADD CONSTRAINT uq_customers_code UNIQUE (code);

CREATE TABLE rewards (
    id INT NOT NULL PRIMARY KEY,
    customer_id INT NOT NULL,
    label VARCHAR(60) NOT NULL,
    CONSTRAINT fk_rewards_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
);

CREATE INDEX ix_rewards_customer ON rewards (customer_id);

INSERT INTO rewards (id, customer_id, label)
SELECT id, id, 'welcome-' || code FROM customers WHERE code IS NOT NULL;

DROP TABLE tiers;

ALTER TABLE customers DROP COLUMN tier_id;
",
    ),
];

/// Writes the suite's migrations under `root` (which becomes `MIGRATIONS_DIR`).
pub fn write(root: &Path) {
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/public"),
        &root.join("public"),
    );
    for (dialect, files) in [("mysql", &MYSQL), ("postgres", &POSTGRES)] {
        let dir = root.join("tenant").join(dialect);
        std::fs::create_dir_all(&dir).expect("mkdir tenant migrations");
        for (name, sql) in files.iter() {
            std::fs::write(dir.join(name), sql).expect("write migration");
        }
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read shipped migrations") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy migration");
        }
    }
}
