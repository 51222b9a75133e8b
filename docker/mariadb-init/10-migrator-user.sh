#!/bin/bash
# Creates the account tenant-migrator uses: it creates and alters tenant databases, so it
# needs schema privileges on every database, but no server administration rights.
set -euo pipefail
mariadb -uroot -p"${MARIADB_ROOT_PASSWORD}" <<SQL
CREATE USER IF NOT EXISTS 'migrator'@'%' IDENTIFIED BY '${MIGRATOR_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES,
      CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EXECUTE,
      LOCK TABLES, CREATE TEMPORARY TABLES
  ON *.* TO 'migrator'@'%';
FLUSH PRIVILEGES;
SQL
