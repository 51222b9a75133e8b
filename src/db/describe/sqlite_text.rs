//! What SQLite only keeps in a table's or index's `CREATE` text: check constraints,
//! `AUTOINCREMENT`, a partial index's condition and expression key parts. A small scanner
//! over that text (string literals, quoted names and comments skipped), and the spelling
//! every expression is compared in.

/// One token of SQL text at its parenthesis depth.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    /// Depth before the token (`(` is at the depth outside it).
    depth: usize,
    start: usize,
    end: usize,
}

fn tokens(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                continue;
            }
            b'\'' | b'"' | b'`' | b'[' => {
                let close = if c == b'[' { b']' } else { c };
                i += 1;
                while i < b.len() {
                    if b[i] == close {
                        // A doubled quote is one quote character inside.
                        if close != b']' && b.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
            }
            b'(' => {
                out.push(Token {
                    text: "(".into(),
                    depth,
                    start,
                    end: i + 1,
                });
                depth += 1;
                i += 1;
                continue;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        out.push(Token {
            text: sql[start..i].to_owned(),
            depth,
            start,
            end: i,
        });
    }
    out
}

fn is_word(t: &Token, word: &str) -> bool {
    t.text.eq_ignore_ascii_case(word)
}

/// The text inside the parentheses opened by token `open`, and the index of the token after
/// the closing one.
fn group<'a>(sql: &'a str, toks: &[Token], open: usize) -> Option<(&'a str, usize)> {
    let depth = toks.get(open).filter(|t| t.text == "(")?.depth;
    let close = toks[open + 1..]
        .iter()
        .position(|t| t.text == ")" && t.depth == depth)?
        + open
        + 1;
    Some((&sql[toks[open].end..toks[close].start], close + 1))
}

/// An identifier token without its quotes.
fn unquote(text: &str) -> String {
    let t = text.trim();
    match t.as_bytes().first() {
        Some(b'"') | Some(b'`') => t[1..t.len() - 1].replace(&t[..1].repeat(2), &t[..1]),
        Some(b'[') => t[1..t.len() - 1].to_owned(),
        _ => t.to_owned(),
    }
}

/// The check constraints of a `CREATE TABLE` text: `(name, expression)`, in order.
pub(super) fn checks(sql: &str) -> Vec<(Option<String>, String)> {
    let toks = tokens(sql);
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.depth != 1 || !is_word(t, "CHECK") {
            continue;
        }
        let Some((body, _)) = group(sql, &toks, i + 1) else {
            continue;
        };
        let name =
            (i >= 2 && is_word(&toks[i - 2], "CONSTRAINT")).then(|| unquote(&toks[i - 1].text));
        out.push((name, normalize(body)));
    }
    out
}

/// What follows a `CREATE TABLE` text's column list (`without rowid`, `strict`), normalized;
/// `None` when nothing does.
pub(super) fn table_options(sql: &str) -> Option<String> {
    let toks = tokens(sql);
    let open = toks.iter().position(|t| t.depth == 0 && t.text == "(")?;
    let (_, after) = group(sql, &toks, open)?;
    let rest = toks.get(after).map(|t| &sql[t.start..]).unwrap_or("");
    let rest = normalize(rest);
    (!rest.is_empty()).then_some(rest)
}

/// True when a column of the `CREATE TABLE` text names a collation.
pub(super) fn collates(sql: &str) -> bool {
    tokens(sql)
        .iter()
        .any(|t| t.depth == 1 && is_word(t, "COLLATE"))
}

/// True when the `CREATE TABLE` text says `AUTOINCREMENT`.
pub(super) fn autoincrement(sql: &str) -> bool {
    tokens(sql)
        .iter()
        .any(|t| t.depth == 1 && is_word(t, "AUTOINCREMENT"))
}

/// A `CREATE INDEX` text's key parts and `WHERE` condition.
pub(super) fn index_parts(sql: &str) -> (Vec<String>, Option<String>) {
    let toks = tokens(sql);
    let Some(on) = toks.iter().position(|t| t.depth == 0 && is_word(t, "ON")) else {
        return (Vec::new(), None);
    };
    let Some(open) = toks[on..]
        .iter()
        .position(|t| t.depth == 0 && t.text == "(")
        .map(|p| p + on)
    else {
        return (Vec::new(), None);
    };
    let Some((body, after)) = group(sql, &toks, open) else {
        return (Vec::new(), None);
    };
    let predicate = toks[after..]
        .iter()
        .position(|t| t.depth == 0 && is_word(t, "WHERE"))
        .map(|p| normalize(&sql[toks[after + p].end..]));
    (
        split_top(body).iter().map(|p| key_part(p)).collect(),
        predicate,
    )
}

/// Splits at commas outside parentheses and quotes.
fn split_top(s: &str) -> Vec<&str> {
    let toks = tokens(s);
    let mut parts = Vec::new();
    let mut from = 0;
    for t in &toks {
        if t.depth == 0 && t.text == "," {
            parts.push(&s[from..t.start]);
            from = t.end;
        }
    }
    parts.push(&s[from..]);
    parts
}

/// A key part as compared: a plain (possibly quoted) column name unquoted, anything else
/// normalized.
fn key_part(part: &str) -> String {
    let toks = tokens(part);
    match toks.as_slice() {
        [one] if !one.text.starts_with('\'') => unquote(&one.text),
        _ => normalize(part),
    }
}

/// The spelling expressions are compared in: lower case and single spaces outside string
/// literals and quoted names, no spaces inside parentheses, trailing `;` dropped.
pub(crate) fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut prev_end = None::<usize>;
    for t in tokens(sql) {
        if let Some(end) = prev_end {
            let gap = end < t.start || out.ends_with(',');
            let after_open = out.ends_with('(');
            if gap && !after_open && t.text != ")" && t.text != "," {
                out.push(' ');
            }
        }
        let literal = matches!(t.text.as_bytes().first(), Some(b'\'' | b'"' | b'`' | b'['));
        if literal {
            out.push_str(&t.text);
        } else {
            out.push_str(&t.text.to_ascii_lowercase());
        }
        prev_end = Some(t.end);
    }
    out.trim_end_matches(';').trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "CREATE TABLE \"t\" (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  \
        name TEXT NOT NULL CHECK (length(name) <= 100), -- no CHECK (here)\n  \
        note TEXT DEFAULT 'CHECK (x)',\n  CONSTRAINT \"positive\" CHECK (id > 0),\n  \
        CHECK (name <> '')\n)";

    #[test]
    fn checks_are_found_with_their_names_outside_literals_and_comments() {
        assert_eq!(
            checks(TABLE),
            vec![
                (None, "length(name) <= 100".to_owned()),
                (Some("positive".to_owned()), "id > 0".to_owned()),
                (None, "name <> ''".to_owned()),
            ]
        );
        assert!(autoincrement(TABLE));
        assert!(!collates(TABLE));
        assert!(collates(
            "CREATE TABLE t (a TEXT COLLATE NOCASE, note TEXT DEFAULT 'COLLATE')"
        ));
        assert_eq!(table_options(TABLE), None);
        assert_eq!(
            table_options("CREATE TABLE t (a TEXT PRIMARY KEY) WITHOUT ROWID, STRICT"),
            Some("without rowid, strict".to_owned())
        );
        assert!(!autoincrement(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT DEFAULT 'AUTOINCREMENT')"
        ));
    }

    #[test]
    fn index_text_gives_parts_and_condition() {
        assert_eq!(
            index_parts("CREATE INDEX ix ON \"t\" (\"a\", lower(b), c DESC) WHERE a IS NOT NULL"),
            (
                vec!["a".to_owned(), "lower(b)".to_owned(), "c desc".to_owned()],
                Some("a is not null".to_owned())
            )
        );
        assert_eq!(
            index_parts("CREATE UNIQUE INDEX ix ON t(a)"),
            (vec!["a".to_owned()], None)
        );
    }

    #[test]
    fn normalized_spelling_ignores_case_and_spacing_but_not_literals() {
        assert_eq!(
            normalize("STRFTIME( '%Y-%m-%dT%H:%M:%fZ',  'NOW' )"),
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'NOW')"
        );
        assert_eq!(normalize("CURRENT_TIMESTAMP"), "current_timestamp");
        assert_eq!(normalize("a   IN ('X','Y')"), "a in ('X', 'Y')");
    }
}
