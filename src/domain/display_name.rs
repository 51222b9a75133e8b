//! `DisplayName`: a tenant's human-readable name (`POST /tenants`, `create --display-name`).

use std::fmt;

use serde::Serialize;

use super::{ValidationError, text};

/// Longest display name, in characters (the catalog column is `VARCHAR(255)`).
pub const MAX_CHARS: usize = 255;

/// A tenant's display name: trimmed, 1 to 255 characters, no control characters (NUL, tab,
/// newlines, escapes …) and no characters that reorder how the text around them is shown.
///
/// Every backend then stores it as given: PostgreSQL refuses NUL in text, MySQL and SQLite
/// would keep it and hand it to every dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let err = |m: String| ValidationError::new("display_name", m);
        let s = raw.trim();
        if s.is_empty() {
            return Err(err("must not be empty".into()));
        }
        if s.chars().count() > MAX_CHARS {
            return Err(err(format!("must be at most {MAX_CHARS} characters")));
        }
        text::check_printable(s).map_err(err)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_names_trimmed() {
        for (raw, want) in [
            ("Salão Bella", "Salão Bella"),
            ("  Hair & Co. ", "Hair & Co."),
            ("美容院 💇", "美容院 💇"),
        ] {
            assert_eq!(DisplayName::parse(raw).expect(raw).as_str(), want);
        }
        let longest = "é".repeat(MAX_CHARS);
        assert!(DisplayName::parse(&longest).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_control_characters() {
        let long = "x".repeat(MAX_CHARS + 1);
        for (bad, why) in [
            ("", "empty"),
            ("   ", "empty"),
            (long.as_str(), "at most 255"),
            ("a\0b", "U+0000"),
            ("a\tb", "U+0009"),
            ("line\nbreak", "U+000A"),
            ("a\rb", "U+000D"),
            ("esc\u{1b}[31m", "U+001B"),
            ("del\u{7f}", "U+007F"),
            ("c1\u{85}x", "U+0085"),
            ("evil\u{202e}gpj.exe", "U+202E"),
            ("iso\u{2066}late", "U+2066"),
            ("sep\u{2028}arator", "U+2028"),
        ] {
            let e = DisplayName::parse(bad).expect_err(bad);
            assert_eq!(e.field, "display_name");
            assert!(e.message.contains(why), "{bad:?}: {}", e.message);
        }
    }
}
