//! `Email`: an admin user's login, normalised to lowercase.

use std::fmt;

use serde::Serialize;

use super::ValidationError;

/// A syntactically plausible e-mail address (`local@domain.tld`), lowercased, ≤ 254 chars.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim().to_ascii_lowercase();
        let err = |m: &str| ValidationError::new("email", m);
        if s.is_empty() || s.len() > 254 {
            return Err(err("must be between 1 and 254 characters"));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(err("must look like name@example.com"));
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        if !domain_ok || !local_ok {
            return Err(err("must look like name@example.com"));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates() {
        assert_eq!(
            Email::parse(" Ops@Example.COM ").unwrap().as_str(),
            "ops@example.com"
        );
        for bad in ["", "x", "x@y", "@y.com", "x@.com", "a b@c.com", "x@y.com."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
