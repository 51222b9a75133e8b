//! Placeholders in migration files: `${catalog}`, `${schema}` and the user's own `${name}`
//! (`PLACEHOLDER_<NAME>=value` or `--placeholder name=value`).
//!
//! The splitter records where each statement names one (see [`Placeholder`]), in code, string
//! literals and quoted identifiers but never in comments or PostgreSQL dollar-quoted bodies.
//! Loading substitutes nothing, so a file's checksum stays over its bytes as written.
//!
//! Substitution happens in two steps, so the per-tenant work stays small:
//! - [`MigrationSet::bind`], once when an engine is built: the values that are the same for
//!   every schema (`${catalog}`, the user's placeholders, and `${schema}` where it cannot vary:
//!   the catalog's own migrations, and SQLite where every file is `main`). An unknown name is
//!   refused there, naming the file and line, and so is `${catalog}` or a user placeholder in
//!   a SQLite tenant migration (a tenant file cannot reach another file).
//! - [`MigrationSet::get_for`], for one schema: renders the `${schema}` left in a tenant
//!   migration. A migration without one is borrowed as it is.
//!
//! In code a value goes in as a quoted identifier of the backend (`` `x` `` or `"x"`); inside a
//! quoted string or identifier it goes in bare, with that quote character doubled.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;

use super::source::{Migration, MigrationSet, Scope, SourceError};
use super::split::{Context, Placeholder, Statement, placeholder_name_len};
use crate::db::{Backend, Target};

/// The catalog's schema (MySQL database, PostgreSQL schema).
pub const CATALOG: &str = "catalog";
/// The schema being migrated (the catalog itself in the catalog's migrations).
pub const SCHEMA: &str = "schema";
/// Longest placeholder name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Longest placeholder value, in bytes.
pub const MAX_VALUE_LEN: usize = 64;
/// What `${catalog}` and `${schema}` stand for on SQLite: every file is its own `main`.
pub const SQLITE_MAIN: &str = "main";

/// True for a placeholder name: `[a-z_][a-z0-9_]*`, at most 63 bytes.
pub fn is_name(name: &str) -> bool {
    let mut with_brace = name.as_bytes().to_vec();
    with_brace.push(b'}');
    placeholder_name_len(&with_brace) == Some(name.len())
}

/// Checks a user-defined placeholder: a name that is not built in, and a value that is an
/// identifier (not blank, at most 64 bytes, no control characters). The error says what is
/// wrong without echoing the value.
pub fn check_user(name: &str, value: &str) -> Result<(), String> {
    if name == CATALOG || name == SCHEMA {
        return Err(format!(
            "${{{name}}} is built in (the {} schema) and cannot be set",
            if name == CATALOG {
                "catalog's"
            } else {
                "migrated"
            }
        ));
    }
    if !is_name(name) {
        return Err(format!(
            "{name:?} is not a placeholder name (a-z, 0-9 and _, not starting with a digit, at \
             most {MAX_NAME_LEN} bytes)"
        ));
    }
    if value.trim().is_empty() {
        return Err(format!("the value of ${{{name}}} is empty"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "the value of ${{{name}}} is {} bytes long; identifiers have at most {MAX_VALUE_LEN}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "the value of ${{{name}}} contains a control character (NUL, tab, newline, escape …)"
        ));
    }
    Ok(())
}

fn not_on_sqlite(file: &str, p: &Placeholder) -> SourceError {
    SourceError::BadFile {
        file: file.to_owned(),
        message: format!(
            "line {}: placeholder ${{{}}} cannot be used in a SQLite tenant migration: each \
             tenant is a file of its own, which cannot reach the catalog or another database \
             (only ${{schema}}, which is \"main\", can)",
            p.line, p.name
        ),
    }
}

/// `value` as it goes in at a placeholder's place.
fn render(value: &str, context: Context, backend: Backend) -> String {
    match context {
        Context::Code => backend.quote(value),
        Context::Quoted { quote, backslash } => {
            let mut out = String::with_capacity(value.len() + 2);
            for c in value.chars() {
                if c == char::from(quote) || (backslash && c == '\\') {
                    out.push(c);
                }
                out.push(c);
            }
            out
        }
    }
}

/// `stmt` with each placeholder `value_of` gives a value replaced; the others stay, at their
/// new offsets.
fn substitute<'v, E>(
    stmt: &Statement,
    backend: Backend,
    mut value_of: impl FnMut(&Placeholder) -> Result<Option<&'v str>, E>,
) -> Result<Statement, E> {
    let mut sql = String::with_capacity(stmt.sql.len() + 16 * stmt.placeholders.len());
    let mut kept = Vec::new();
    let mut from = 0;
    for p in &stmt.placeholders {
        sql.push_str(&stmt.sql[from..p.at]);
        match value_of(p)? {
            Some(value) => sql.push_str(&render(value, p.context, backend)),
            None => {
                kept.push(Placeholder {
                    at: sql.len(),
                    ..p.clone()
                });
                sql.push_str(&stmt.sql[p.at..p.end()]);
            }
        }
        from = p.end();
    }
    sql.push_str(&stmt.sql[from..]);
    Ok(Statement {
        sql,
        line: stmt.line,
        placeholders: kept,
    })
}

fn has_placeholders(m: &Migration) -> bool {
    m.statements.iter().any(|s| !s.placeholders.is_empty())
}

impl Migration {
    /// This migration with `${schema}` standing for `schema` (a bare name, quoted here).
    /// Borrowed when it names no placeholder.
    pub fn for_schema(&self, backend: Backend, schema: &str) -> Cow<'_, Migration> {
        if !has_placeholders(self) {
            return Cow::Borrowed(self);
        }
        let statements = self
            .statements
            .iter()
            .map(|s| {
                let done = substitute::<Infallible>(s, backend, |p| {
                    Ok((p.name == SCHEMA).then_some(schema))
                });
                match done {
                    Ok(s) => s,
                    Err(never) => match never {},
                }
            })
            .collect();
        Cow::Owned(Migration {
            statements,
            ..self.clone_header()
        })
    }

    /// Everything but the statements.
    fn clone_header(&self) -> Migration {
        Migration {
            version: self.version,
            name: self.name.clone(),
            file: self.file.clone(),
            checksum: self.checksum.clone(),
            statements: Vec::new(),
        }
    }
}

impl MigrationSet {
    /// Substitutes the values that are the same for every schema: `${catalog}` (the
    /// catalog's schema `catalog`), the user's placeholders (`user`, validated by `Config`)
    /// and `${schema}` where it cannot vary (the catalog's own migrations; SQLite). What stays
    /// is `${schema}` in tenant migrations, rendered per schema by [`MigrationSet::get_for`].
    ///
    /// An unknown placeholder is an error naming the file, the line and the known names.
    pub fn bind(
        mut self,
        catalog: &str,
        user: &BTreeMap<String, String>,
    ) -> Result<Self, SourceError> {
        let backend = self.backend;
        let sqlite = backend == Backend::Sqlite;
        let catalog = if sqlite { SQLITE_MAIN } else { catalog };
        let schema = match self.scope {
            _ if sqlite => Some(SQLITE_MAIN),
            Scope::Public => Some(catalog),
            Scope::Tenant => None,
        };
        // A SQLite tenant is a file of its own: other databases are out of its reach.
        let isolated = sqlite && self.scope == Scope::Tenant;
        for m in self.migrations.iter_mut().filter(|m| has_placeholders(m)) {
            let file = &m.file;
            for stmt in m
                .statements
                .iter_mut()
                .filter(|s| !s.placeholders.is_empty())
            {
                *stmt = substitute(stmt, backend, |p| match p.name.as_str() {
                    CATALOG if isolated => Err(not_on_sqlite(file, p)),
                    CATALOG => Ok(Some(catalog)),
                    SCHEMA => Ok(schema),
                    other => match user.get(other) {
                        Some(_) if isolated => Err(not_on_sqlite(file, p)),
                        Some(value) => Ok(Some(value.as_str())),
                        None => Err(unknown(file, p, user)),
                    },
                })?;
            }
        }
        Ok(self)
    }

    /// Migration `version` as it runs on `target`: `${schema}` rendered as the tenant's
    /// schema. Borrowed when there is nothing to render (no placeholder; the catalog, whose
    /// migrations [`MigrationSet::bind`] completed).
    pub fn get_for(&self, version: i64, target: &Target) -> Option<Cow<'_, Migration>> {
        let m = self.get(version)?;
        let schema = match (self.backend, target) {
            (Backend::Sqlite, _) => SQLITE_MAIN,
            (_, Target::Tenant(s)) => s.as_str(),
            (_, Target::Catalog) => return Some(Cow::Borrowed(m)),
        };
        Some(m.for_schema(self.backend, schema))
    }
}

fn unknown(file: &str, p: &Placeholder, user: &BTreeMap<String, String>) -> SourceError {
    let known: Vec<&str> = [CATALOG, SCHEMA]
        .into_iter()
        .chain(user.keys().map(String::as_str))
        .collect();
    SourceError::BadFile {
        file: file.to_owned(),
        message: format!(
            "line {}: unknown placeholder ${{{}}}; known: {}",
            p.line,
            p.name,
            known.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SchemaName;
    use crate::migrate::source::MigrationSource;
    use crate::migrate::split::split_statements;

    fn user(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A source with `sql` as tenant migration 1 of every dialect (but SQLite, which cannot
    /// reach other databases).
    fn tenant_source(sql: &str) -> Result<MigrationSource, SourceError> {
        tenant_source_for(sql, &[Backend::MySql, Backend::Postgres])
    }

    fn tenant_source_for(sql: &str, backends: &[Backend]) -> Result<MigrationSource, SourceError> {
        let dir = tempfile::tempdir().expect("temp dir");
        for b in backends {
            let d = dir.path().join("tenant").join(b.folder());
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("0001_x.sql"), sql).expect("write");
        }
        MigrationSource::from_dir(dir.path())
    }

    fn tenant(name: &str) -> Target {
        Target::Tenant(SchemaName::parse(name).expect("valid name"))
    }

    fn sqls(m: &Migration) -> Vec<String> {
        m.statements.iter().map(|s| s.sql.clone()).collect()
    }

    #[test]
    fn splitter_records_code_strings_and_quoted_identifiers_not_comments() {
        let sql = "-- ${a}\n# ${b}\n/* ${c} */ SELECT ${d}, '${e}', \"${f}\", `${g}`, x${h};";
        let stmts = split_statements(sql, Backend::MySql).expect("splits");
        let names: Vec<&str> = stmts[0]
            .placeholders
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["d", "e", "f", "g", "h"]);
        for p in &stmts[0].placeholders {
            assert_eq!(&stmts[0].sql[p.at..p.end()], format!("${{{}}}", p.name));
            assert_eq!(p.line, 3);
        }
        assert_eq!(stmts[0].placeholders[0].context, Context::Code);
        assert_eq!(
            stmts[0].placeholders[1].context,
            Context::Quoted {
                quote: b'\'',
                backslash: true
            }
        );
    }

    #[test]
    fn dollar_quoted_bodies_and_other_dollars_are_left_alone() {
        let sql = "CREATE FUNCTION f() RETURNS text AS $$ SELECT '${x}' $$ LANGUAGE sql;\n\
                   CREATE FUNCTION g() RETURNS text AS $js$ return `${y}`; $js$ LANGUAGE plv8;\n\
                   SELECT $1, ${Upper}, ${1x}, ${}, ${ x }, $ {x}, ${schema};";
        let stmts = split_statements(sql, Backend::Postgres).expect("splits");
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert!(stmts[0].placeholders.is_empty());
        assert!(stmts[1].placeholders.is_empty());
        let names: Vec<&str> = stmts[2]
            .placeholders
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["schema"]);
    }

    #[test]
    fn names_are_lower_case_identifiers_of_at_most_63_bytes() {
        assert!(is_name("app_public") && is_name("_x1") && is_name(&"a".repeat(63)));
        for bad in ["", "App", "1x", "a-b", "a b", "a}", &"a".repeat(64)] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn user_values_are_identifiers() {
        assert!(check_user("app_public", "torri_app_public").is_ok());
        assert!(check_user("app_public", &"x".repeat(64)).is_ok());
        for (name, value, says) in [
            ("catalog", "x", "built in"),
            ("schema", "x", "built in"),
            ("App", "x", "not a placeholder name"),
            ("app", "", "empty"),
            ("app", "  ", "empty"),
            ("app", &"x".repeat(65), "65 bytes"),
            ("app", "a\0b", "control character"),
            ("app", "a\tb", "control character"),
            ("app", "a\u{1b}[31m", "control character"),
        ] {
            let e = check_user(name, value).expect_err(name);
            assert!(e.contains(says), "{name} {value:?}: {e}");
            assert!(!e.contains('\0') && !e.contains('\u{1b}'), "{e:?}");
        }
    }

    #[test]
    fn bind_quotes_for_the_backend_and_keeps_schema_for_tenants() {
        let sql = "ALTER TABLE ${schema}.clients ADD FOREIGN KEY (t) REFERENCES ${catalog}.tenants (id);\n\
                   INSERT INTO n VALUES ('${app}', 'it''s ${schema}');";
        let source = tenant_source(sql).expect("loads");
        let values = user(&[("app", "o'k`\"x")]);
        let set = source
            .set(Scope::Tenant, Backend::MySql)
            .bind("cat", &values)
            .expect("binds");
        let m = &set.migrations[0];
        assert_eq!(
            sqls(m),
            [
                "ALTER TABLE ${schema}.clients ADD FOREIGN KEY (t) REFERENCES `cat`.tenants (id)",
                "INSERT INTO n VALUES ('o''k`\"x', 'it''s ${schema}')",
            ]
        );
        // The checksum is the file's, placeholders and all.
        assert_eq!(m.checksum, crate::migrate::source::checksum(sql.as_bytes()));
        let rendered = set.get_for(1, &tenant("salon_a")).expect("version 1");
        assert!(matches!(rendered, Cow::Owned(_)));
        assert_eq!(
            sqls(&rendered),
            [
                "ALTER TABLE `salon_a`.clients ADD FOREIGN KEY (t) REFERENCES `cat`.tenants (id)",
                "INSERT INTO n VALUES ('o''k`\"x', 'it''s salon_a')",
            ]
        );
        assert!(
            rendered
                .statements
                .iter()
                .all(|s| s.placeholders.is_empty())
        );

        let pg = source
            .set(Scope::Tenant, Backend::Postgres)
            .bind("cat", &values)
            .expect("binds");
        let rendered = pg.get_for(1, &tenant("salon_a")).expect("version 1");
        assert_eq!(
            sqls(&rendered),
            [
                "ALTER TABLE \"salon_a\".clients ADD FOREIGN KEY (t) REFERENCES \"cat\".tenants (id)",
                "INSERT INTO n VALUES ('o''k`\"x', 'it''s salon_a')",
            ]
        );
    }

    #[test]
    fn mysql_backslash_strings_get_backslashes_doubled() {
        let source = tenant_source("SELECT \"${app}\", '${app}', `${app}`;").expect("loads");
        let set = source
            .set(Scope::Tenant, Backend::MySql)
            .bind("cat", &user(&[("app", "a\\b")]))
            .expect("binds");
        assert_eq!(
            sqls(&set.migrations[0]),
            ["SELECT \"a\\\\b\", 'a\\\\b', `a\\b`"]
        );
    }

    #[test]
    fn migrations_without_schema_are_borrowed() {
        let source = tenant_source("CREATE TABLE t (x INT REFERENCES ${catalog}.tenants (id));")
            .expect("loads");
        let set = source
            .set(Scope::Tenant, Backend::Postgres)
            .bind("cat", &BTreeMap::new())
            .expect("binds");
        assert!(matches!(
            set.get_for(1, &tenant("salon_a")),
            Some(Cow::Borrowed(_))
        ));
        assert!(set.get_for(2, &tenant("salon_a")).is_none());
    }

    #[test]
    fn unknown_placeholders_name_file_line_and_the_known_ones() {
        let source = tenant_source("SELECT 1;\n\nSELECT\n  ${app_publc};").expect("loads");
        let e = source
            .set(Scope::Tenant, Backend::MySql)
            .bind("cat", &user(&[("app_public", "x")]))
            .expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "tenant/mysql/0001_x.sql: line 4: unknown placeholder ${app_publc}; known: catalog, schema, app_public"
        );
    }

    #[test]
    fn public_schema_is_the_catalog() {
        let dir = tempfile::tempdir().expect("temp dir");
        for b in Backend::ALL {
            let d = dir.path().join("public").join(b.folder());
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("0001_x.sql"), "CREATE TABLE ${schema}.t (x INT);")
                .expect("write");
        }
        let source = MigrationSource::from_dir(dir.path()).expect("loads");
        let none = BTreeMap::new();
        let mysql = source
            .set(Scope::Public, Backend::MySql)
            .bind("cat", &none)
            .expect("binds");
        assert_eq!(sqls(&mysql.migrations[0]), ["CREATE TABLE `cat`.t (x INT)"]);
        let sqlite = source
            .set(Scope::Public, Backend::Sqlite)
            .bind("cat", &none)
            .expect("binds");
        assert_eq!(
            sqls(&sqlite.migrations[0]),
            ["CREATE TABLE \"main\".t (x INT)"]
        );
    }

    #[test]
    fn sqlite_tenants_may_only_name_schema() {
        // Refused when the engine binds the SQLite set; the MySQL one binds.
        let source = tenant_source_for(
            "SELECT 1;\nCREATE TABLE t (x REFERENCES ${catalog}.tenants);",
            &Backend::ALL,
        )
        .expect("loads");
        let e = source
            .set(Scope::Tenant, Backend::Sqlite)
            .bind("cat", &BTreeMap::new())
            .expect_err("refused");
        let msg = e.to_string();
        assert!(
            msg.starts_with("tenant/sqlite/0001_x.sql: line 2: placeholder ${catalog} cannot"),
            "{msg}"
        );
        assert!(
            source
                .set(Scope::Tenant, Backend::MySql)
                .bind("cat", &BTreeMap::new())
                .is_ok()
        );
        // So is a user placeholder; an unknown one is reported as unknown.
        let source =
            tenant_source_for("SELECT 1;\n\nSELECT ${app};", &Backend::ALL).expect("loads");
        let e = source
            .set(Scope::Tenant, Backend::Sqlite)
            .bind("cat", &user(&[("app", "x")]))
            .expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("tenant/sqlite/0001_x.sql: line 3: placeholder ${app} cannot"),
            "{e}"
        );
        let e = source
            .set(Scope::Tenant, Backend::Sqlite)
            .bind("cat", &BTreeMap::new())
            .expect_err("refused");
        assert!(e.to_string().contains("unknown placeholder ${app}"), "{e}");
        assert!(
            source
                .set(Scope::Tenant, Backend::MySql)
                .bind("cat", &user(&[("app", "x")]))
                .is_ok()
        );
        let source =
            tenant_source_for("CREATE TABLE ${schema}.t (x INT);", &Backend::ALL).expect("loads");
        let set = source
            .set(Scope::Tenant, Backend::Sqlite)
            .bind("cat", &BTreeMap::new())
            .expect("binds");
        assert_eq!(
            sqls(&set.migrations[0]),
            ["CREATE TABLE \"main\".t (x INT)"]
        );
    }
}
