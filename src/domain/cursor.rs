//! `TenantCursor`: where a page of the tenant list starts (`GET /tenants?cursor=`).

use std::fmt;

use super::ValidationError;
use super::schema_name::check_shape;

/// A position in the schema-name order: the list continues with the names after it. The
/// `next_cursor` of a page is a schema name, so a cursor has a schema name's shape
/// (`^[a-z][a-z0-9_]{0,62}$`); reserved names are positions like any other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantCursor(String);

impl TenantCursor {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        check_shape(raw).map_err(|m| {
            ValidationError::new(
                "cursor",
                format!("{m} (pass the next_cursor of the previous page)"),
            )
        })?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_schema_name_positions() {
        for ok in ["a", "salon_b", "public", "pg_x", &"z".repeat(63)] {
            assert_eq!(TenantCursor::parse(ok).expect(ok).as_str(), ok);
        }
    }

    #[test]
    fn refuses_what_no_schema_name_can_be() {
        for bad in [
            "",
            "a\0",
            "\0",
            "a\tb",
            "A",
            "a'--",
            "a b",
            &"a".repeat(64),
            "é",
        ] {
            let e = TenantCursor::parse(bad).expect_err(bad);
            assert_eq!(e.field, "cursor");
            assert!(!e.message.contains('\0'), "{}", e.message);
        }
    }
}
