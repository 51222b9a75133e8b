//! The one rule for free text a user sends (display names, paging cursors): no character that
//! is not text. NUL ends strings in C clients and is refused by PostgreSQL, other control
//! characters break log lines and terminals, and bidirectional overrides make a name read
//! differently from what it is.

/// `Err` with a message naming the first offending character (as `U+XXXX`, never the raw
/// character, which may itself be what breaks the reader) and its position.
pub(super) fn check_printable(s: &str) -> Result<(), String> {
    match s.chars().enumerate().find(|(_, c)| !is_text(*c)) {
        None => Ok(()),
        Some((i, c)) => Err(format!(
            "must not contain control or formatting characters (found U+{:04X} at character {})",
            u32::from(c),
            i + 1
        )),
    }
}

/// `s` with every character the rule refuses written as `\u{XXXX}`: for showing
/// text stored before the rule (or by other tools) on a terminal, where an escape sequence
/// would otherwise be obeyed.
pub fn escape_unprintable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().all(is_text) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_text(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:04X}}}", u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// False for control characters (C0 including tab and newlines, DEL, C1), line and paragraph
/// separators, and the bidirectional embedding, override and isolate controls.
fn is_text(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_bad_character_without_echoing_it() {
        assert_eq!(check_printable("ok text — ação"), Ok(()));
        let e = check_printable("ab\0c\n").unwrap_err();
        assert!(e.contains("U+0000 at character 3"), "{e}");
        assert!(!e.contains('\0'));
    }

    #[test]
    fn escapes_what_it_refuses() {
        assert_eq!(escape_unprintable("Salão"), "Salão");
        assert_eq!(
            escape_unprintable("a\u{1b}[2Jb\0\u{202e}"),
            "a\\u{001B}[2Jb\\u{0000}\\u{202E}"
        );
    }
}
