//! `SchemaName`: the one way a tenant schema name enters the program.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Longest schema name: MySQL caps database names at 64 characters, PostgreSQL identifiers at
/// 63 bytes; the stricter wins.
pub const MAX_LEN: usize = 63;

/// A tenant schema name: `^[a-z][a-z0-9_]{0,62}$` and not a name any backend reserves.
///
/// Because the character set excludes quotes, spaces and dots, a `SchemaName` can never break
/// out of a quoted identifier; the dialects quote it anyway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SchemaName(String);

/// Names no tenant may take: the servers' own schemas and the product's own.
const RESERVED: &[&str] = &[
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "public",
    "template0",
    "template1",
    "postgres",
    "sqlite_master",
    "sqlite_schema",
    "sqlite_temp_master",
    "main",
    "temp",
];

/// True for names that belong to a server (`mysql`, `pg_*`, …) rather than to a tenant.
pub fn is_reserved_schema(name: &str) -> bool {
    RESERVED.contains(&name) || name.starts_with("pg_") || name.starts_with("sqlite_")
}

impl SchemaName {
    /// Validates `raw` as a tenant schema name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let err = |m: String| ValidationError::new("schema_name", m);
        check_shape(raw).map_err(err)?;
        if is_reserved_schema(raw) {
            return Err(err(format!(
                "{raw:?} is reserved by the database server and cannot be a tenant"
            )));
        }
        if raw.starts_with(crate::engine::REFERENCE_PREFIX) {
            return Err(err(format!(
                "{raw:?} is reserved: names starting with {} are the migrator's scratch schemas",
                crate::engine::REFERENCE_PREFIX
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Wraps a name that was validated before (read back from the catalog). Names that no
    /// longer validate are still refused, so a hand-edited catalog row cannot inject SQL.
    pub fn from_catalog(raw: &str) -> Result<Self, ValidationError> {
        Self::parse(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A scratch schema of the migrator's own (drift-check reference). Callers build the
    /// name from the reserved prefix and hex digits only.
    pub(crate) fn reference(name: &str) -> Self {
        debug_assert!(name.starts_with(crate::engine::REFERENCE_PREFIX));
        Self(name.to_owned())
    }
}

/// The characters and length every schema name has (`^[a-z][a-z0-9_]{0,62}$`), reserved
/// names aside: what a position in the schema-name order (a paging cursor) must look like too.
pub(super) fn check_shape(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.len() > MAX_LEN {
        return Err(format!(
            "{} characters is too long (at most {MAX_LEN})",
            raw.chars().count()
        ));
    }
    if !raw.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "{:?} must start with a lowercase letter a-z and contain only a-z, 0-9 and _",
            shorten(raw)
        ));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "{:?} contains {bad:?}; only a-z, 0-9 and _ are allowed",
            shorten(raw)
        ));
    }
    Ok(())
}

/// Keeps error messages readable when someone pastes a paragraph as a schema name.
fn shorten(raw: &str) -> String {
    if raw.chars().count() > 80 {
        let mut s: String = raw.chars().take(77).collect();
        s.push('…');
        s
    } else {
        raw.to_owned()
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SchemaName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SchemaName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["a", "salon_123", "torri_app_tenant_x", &"a".repeat(63)] {
            assert!(SchemaName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("Robert'); DROP DATABASE x;--", "lowercase"),
            ("UPPER", "lowercase"),
            ("1abc", "lowercase"),
            ("a-b", "'-'"),
            ("a b", "' '"),
            ("mysql", "reserved"),
            ("information_schema", "reserved"),
            ("performance_schema", "reserved"),
            ("sys", "reserved"),
            ("public", "reserved"),
            ("pg_toast", "reserved"),
            ("pg_anything", "reserved"),
            ("_tm_x", "lowercase"),
        ];
        for (bad, why) in cases {
            let e = SchemaName::parse(bad).expect_err(bad);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
        let long = "a".repeat(64);
        assert!(
            SchemaName::parse(&long)
                .unwrap_err()
                .message
                .contains("too long")
        );
    }
}
