//! Splits a migration file into the statements sent to the server one by one.
//!
//! Knows what each dialect's lexer knows about where a `;` does *not* end a statement: quoted
//! strings and identifiers (with `''` doubling and, on MySQL, backslash escapes), `--`, `#` and
//! `/* */` comments (nested on PostgreSQL), PostgreSQL dollar quotes (`$body$ … $body$`),
//! `E'…'` strings, the MySQL client's `DELIMITER` command, and SQLite trigger bodies
//! (`CREATE TRIGGER … BEGIN …; …; END;`). An unterminated quote or comment is an error, found
//! when the file is loaded rather than half-way through a tenant.
//!
//! Since it knows where comments and dollar quotes are, it also records where each statement
//! names a placeholder (`${name}`, see [`super::placeholders`]): in code, string literals and
//! quoted identifiers, never in comments or dollar-quoted bodies.

use crate::db::Backend;

/// One statement of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement text without its trailing delimiter.
    pub sql: String,
    /// 1-based line of the file where the statement starts (for error messages).
    pub line: usize,
    /// The `${name}` placeholders `sql` names, in order (empty for most statements).
    pub placeholders: Vec<Placeholder>,
}

/// Where a placeholder sits: in code, or inside a quoted string or identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Plain SQL: the value goes in as a quoted identifier.
    Code,
    /// Inside `quote … quote`: the value goes in bare, with `quote` doubled (and `\` doubled
    /// where backslash escapes apply).
    Quoted { quote: u8, backslash: bool },
}

/// One `${name}` of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The name between the braces.
    pub name: String,
    /// Byte offset of the `$` in [`Statement::sql`].
    pub at: usize,
    /// 1-based line of the file it is on.
    pub line: usize,
    pub context: Context,
}

impl Placeholder {
    /// Byte offset just after its `}` in [`Statement::sql`].
    pub fn end(&self) -> usize {
        self.at + self.name.len() + 3
    }
}

/// Length of the placeholder name at the start of `rest` (`[a-z_][a-z0-9_]*`, at most 63
/// bytes) when `rest` is `name}…`; `None` otherwise.
pub fn placeholder_name_len(rest: &[u8]) -> Option<usize> {
    let first = *rest.first()?;
    if !(first.is_ascii_lowercase() || first == b'_') {
        return None;
    }
    let len = rest
        .iter()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || **c == b'_')
        .count();
    (len <= super::placeholders::MAX_NAME_LEN && rest.get(len) == Some(&b'}')).then_some(len)
}

/// A file the splitter could not make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SplitError {
    pub line: usize,
    pub message: String,
}

/// Splits `sql` into statements as `backend`'s own client would.
pub fn split_statements(sql: &str, backend: Backend) -> Result<Vec<Statement>, SplitError> {
    Splitter::new(sql, backend).run()
}

struct Splitter<'a> {
    src: &'a str,
    bytes: &'a [u8],
    backend: Backend,
    pos: usize,
    line: usize,
    delimiter: String,
    out: Vec<Statement>,
    /// Byte offset where the current statement began.
    start: usize,
    start_line: usize,
    /// True once the current statement has something other than whitespace and comments.
    has_code: bool,
    /// Byte offset and line of the statement's first code (leading comments are dropped).
    code_start: usize,
    code_line: usize,
    /// First words of the current statement (upper-cased), to recognise `CREATE TRIGGER`.
    lead_words: Vec<String>,
    /// SQLite trigger body depth: BEGIN/CASE open, END closes.
    block_depth: i32,
    seen_begin: bool,
    /// Placeholders of the current statement: absolute byte offset, name, line, context.
    placeholders: Vec<(usize, String, usize, Context)>,
}

impl<'a> Splitter<'a> {
    fn new(src: &'a str, backend: Backend) -> Self {
        Self {
            src,
            bytes: src.as_bytes(),
            backend,
            pos: 0,
            line: 1,
            delimiter: ";".into(),
            out: Vec::new(),
            start: 0,
            start_line: 1,
            has_code: false,
            code_start: 0,
            code_line: 1,
            lead_words: Vec::new(),
            block_depth: 0,
            seen_begin: false,
            placeholders: Vec::new(),
        }
    }

    fn err(&self, line: usize, message: impl Into<String>) -> SplitError {
        SplitError {
            line,
            message: message.into(),
        }
    }

    /// Notes that code starts at the current position (the first time in a statement).
    fn mark_code(&mut self) {
        if !self.has_code {
            self.has_code = true;
            self.code_start = self.pos;
            self.code_line = self.line;
        }
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.bytes.get(self.pos + off).copied()
    }

    fn advance(&mut self, n: usize) {
        for _ in 0..n {
            if self.bytes.get(self.pos) == Some(&b'\n') {
                self.line += 1;
            }
            self.pos += 1;
        }
    }

    fn run(mut self) -> Result<Vec<Statement>, SplitError> {
        while self.pos < self.bytes.len() {
            if !self.has_code && self.backend == Backend::MySql && self.at_delimiter_command() {
                self.read_delimiter_command()?;
                continue;
            }
            let c = self.bytes[self.pos];
            match c {
                b'\'' => self.quoted(b'\'', self.backslash_escapes_in_single())?,
                b'"' => self.quoted(b'"', self.backend == Backend::MySql)?,
                b'`' => self.quoted(b'`', false)?,
                b'-' if self.peek(1) == Some(b'-') && self.dash_comment_ok() => self.line_comment(),
                b'#' if self.backend == Backend::MySql => self.line_comment(),
                b'/' if self.peek(1) == Some(b'*') => self.block_comment()?,
                b'$' if self.placeholder_len().is_some() => {
                    self.mark_code();
                    self.placeholder(Context::Code);
                }
                b'$' if self.backend == Backend::Postgres => self.dollar_quoted()?,
                b'E' | b'e'
                    if self.backend == Backend::Postgres
                        && self.peek(1) == Some(b'\'')
                        && !self.prev_is_word_char() =>
                {
                    self.mark_code();
                    self.advance(1);
                    self.quoted(b'\'', true)?;
                }
                _ if self.bytes[self.pos..].starts_with(self.delimiter.as_bytes())
                    && self.delimiter_ends_statement() =>
                {
                    let end = self.pos;
                    self.advance(self.delimiter.len());
                    self.finish(end);
                }
                _ if c.is_ascii_alphabetic() || c == b'_' => self.word(),
                _ => {
                    if !c.is_ascii_whitespace() {
                        self.mark_code();
                    }
                    self.advance(1);
                }
            }
        }
        let end = self.bytes.len();
        if self.has_code && self.block_depth > 0 {
            return Err(self.err(self.start_line, "trigger body has no matching END"));
        }
        self.finish(end);
        Ok(self.out)
    }

    fn backslash_escapes_in_single(&self) -> bool {
        self.backend == Backend::MySql
    }

    /// MySQL needs whitespace after `--` for it to start a comment; the others do not.
    fn dash_comment_ok(&self) -> bool {
        match self.backend {
            Backend::MySql => self
                .peek(2)
                .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()),
            _ => true,
        }
    }

    fn prev_is_word_char(&self) -> bool {
        self.pos > 0 && {
            let p = self.bytes[self.pos - 1];
            p.is_ascii_alphanumeric() || p == b'_' || p == b'$'
        }
    }

    fn delimiter_ends_statement(&self) -> bool {
        // Inside a SQLite trigger body, `;` separates the body's statements.
        !(self.is_trigger() && (self.block_depth > 0 || !self.seen_begin))
    }

    fn is_trigger(&self) -> bool {
        if self.backend != Backend::Sqlite {
            return false;
        }
        let w: Vec<&str> = self.lead_words.iter().map(String::as_str).collect();
        matches!(
            w.as_slice(),
            ["CREATE", "TRIGGER", ..] | ["CREATE", "TEMP" | "TEMPORARY", "TRIGGER", ..]
        )
    }

    fn word(&mut self) {
        let begin = self.pos;
        while self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
            && self.placeholder_len().is_none()
        {
            self.advance(1);
        }
        if !self.has_code {
            self.has_code = true;
            self.code_start = begin;
            self.code_line = self.line;
        }
        let word = self.src[begin..self.pos].to_ascii_uppercase();
        if self.lead_words.len() < 3 {
            self.lead_words.push(word.clone());
        }
        if self.is_trigger() {
            match word.as_str() {
                "BEGIN" => {
                    self.block_depth += 1;
                    self.seen_begin = true;
                }
                "CASE" => self.block_depth += 1,
                "END" => self.block_depth -= 1,
                _ => {}
            }
        }
    }

    fn quoted(&mut self, quote: u8, backslash: bool) -> Result<(), SplitError> {
        let open_line = self.line;
        self.mark_code();
        self.advance(1);
        loop {
            match self.peek(0) {
                None => {
                    return Err(
                        self.err(open_line, format!("unterminated {} quote", quote as char))
                    );
                }
                Some(b'\\') if backslash => self.advance(2),
                Some(b'$') if self.placeholder_len().is_some() => {
                    self.placeholder(Context::Quoted { quote, backslash });
                }
                Some(c) if c == quote => {
                    if self.peek(1) == Some(quote) {
                        self.advance(2);
                    } else {
                        self.advance(1);
                        return Ok(());
                    }
                }
                Some(_) => self.advance(1),
            }
        }
    }

    /// Length of the `${name}` at the current position, if there is one.
    fn placeholder_len(&self) -> Option<usize> {
        if self.peek(0) != Some(b'$') || self.peek(1) != Some(b'{') {
            return None;
        }
        placeholder_name_len(&self.bytes[self.pos + 2..]).map(|n| n + 3)
    }

    /// Records the `${name}` at the current position and steps over it.
    fn placeholder(&mut self, context: Context) {
        let Some(len) = self.placeholder_len() else {
            return;
        };
        let name = self.src[self.pos + 2..self.pos + len - 1].to_owned();
        self.placeholders.push((self.pos, name, self.line, context));
        self.advance(len);
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == b'\n' {
                break;
            }
            self.advance(1);
        }
    }

    fn block_comment(&mut self) -> Result<(), SplitError> {
        let open_line = self.line;
        // MySQL executable comments (`/*! … */`) are code the server runs.
        if self.backend == Backend::MySql && self.peek(2) == Some(b'!') {
            self.mark_code();
        }
        let nests = self.backend == Backend::Postgres;
        let mut depth = 0;
        loop {
            match (self.peek(0), self.peek(1)) {
                (None, _) => return Err(self.err(open_line, "unterminated /* comment")),
                (Some(b'/'), Some(b'*')) if depth == 0 || nests => {
                    depth += 1;
                    self.advance(2);
                }
                (Some(b'*'), Some(b'/')) => {
                    depth -= 1;
                    self.advance(2);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => self.advance(1),
            }
        }
    }

    fn dollar_quoted(&mut self) -> Result<(), SplitError> {
        // `$tag$` where tag is empty or an identifier not starting with a digit; `$1` is a
        // parameter and `a$b` part of a word.
        if self.prev_is_word_char() {
            self.mark_code();
            self.advance(1);
            return Ok(());
        }
        let rest = &self.src[self.pos + 1..];
        let tag_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
            .count();
        let tag_ok = rest.as_bytes().get(tag_len) == Some(&b'$')
            && !rest.as_bytes().first().is_some_and(u8::is_ascii_digit);
        if !tag_ok {
            self.mark_code();
            self.advance(1);
            return Ok(());
        }
        let open_line = self.line;
        let tag = self.src[self.pos..self.pos + tag_len + 2].to_owned();
        self.mark_code();
        self.advance(tag.len());
        match self.src[self.pos..].find(tag.as_str()) {
            Some(off) => {
                self.advance(off + tag.len());
                Ok(())
            }
            None => Err(self.err(open_line, format!("unterminated dollar quote {tag}"))),
        }
    }

    fn at_delimiter_command(&self) -> bool {
        let line_start = self.pos == 0 || self.bytes[self.pos - 1] == b'\n';
        let rest = &self.bytes[self.pos..];
        line_start
            && rest.len() > 10
            && rest[..9].eq_ignore_ascii_case(b"DELIMITER")
            && rest[9].is_ascii_whitespace()
    }

    fn read_delimiter_command(&mut self) -> Result<(), SplitError> {
        let line = self.line;
        let rest = &self.src[self.pos..];
        let eol = rest.find('\n').unwrap_or(rest.len());
        let new = rest[9..eol].trim();
        if new.is_empty() || new.contains(['\'', '"', '`']) {
            return Err(self.err(line, "DELIMITER needs a delimiter without quotes"));
        }
        self.delimiter = new.to_owned();
        self.advance(eol);
        self.start = self.pos;
        self.start_line = self.line;
        Ok(())
    }

    fn finish(&mut self, end: usize) {
        let found = std::mem::take(&mut self.placeholders);
        if self.has_code {
            let raw = &self.src[self.code_start..end];
            // Offsets in the trimmed text.
            let base = self.code_start + (raw.len() - raw.trim_start().len());
            self.out.push(Statement {
                sql: raw.trim().to_owned(),
                line: self.code_line,
                placeholders: found
                    .into_iter()
                    .map(|(at, name, line, context)| Placeholder {
                        name,
                        at: at - base,
                        line,
                        context,
                    })
                    .collect(),
            });
        }
        self.start = self.pos;
        self.start_line = self.line;
        self.has_code = false;
        self.lead_words.clear();
        self.block_depth = 0;
        self.seen_begin = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(sql: &str, b: Backend) -> Vec<String> {
        split_statements(sql, b)
            .unwrap()
            .into_iter()
            .map(|s| s.sql)
            .collect()
    }

    #[test]
    fn splits_plain_statements_and_drops_comment_only_chunks() {
        let got = sqls(
            "-- header\nCREATE TABLE a (x INT);\n\n/* note; */\nCREATE TABLE b (y INT);\n-- end\n",
            Backend::MySql,
        );
        assert_eq!(
            got,
            vec!["CREATE TABLE a (x INT)", "CREATE TABLE b (y INT)"]
        );
    }

    #[test]
    fn semicolons_in_strings_identifiers_and_comments_do_not_split() {
        let sql =
            "INSERT INTO t VALUES ('a;b', 'it''s; ok', \"q;\", `c;d`); -- x; y\n# z;\nSELECT 1;";
        assert_eq!(
            sqls(sql, Backend::MySql),
            vec![
                "INSERT INTO t VALUES ('a;b', 'it''s; ok', \"q;\", `c;d`)",
                "SELECT 1"
            ]
        );
        assert_eq!(
            sqls(r"SELECT 'a\';b';", Backend::MySql),
            vec![r"SELECT 'a\';b'"]
        );
        // Outside MySQL a backslash is an ordinary character inside '…'.
        assert_eq!(
            sqls(r"SELECT 'a\'; SELECT 2;", Backend::Sqlite),
            vec![r"SELECT 'a\'", "SELECT 2"]
        );
    }

    #[test]
    fn mysql_executable_comments_are_code() {
        assert_eq!(
            sqls(
                "/*!40101 SET NAMES utf8mb4 */;\n/* plain */ SELECT 1;",
                Backend::MySql
            ),
            vec!["/*!40101 SET NAMES utf8mb4 */", "SELECT 1"]
        );
    }

    #[test]
    fn mysql_dash_comment_needs_a_space() {
        assert_eq!(sqls("SELECT 1--1;", Backend::MySql), vec!["SELECT 1--1"]);
    }

    #[test]
    fn postgres_dollar_quotes_nested_comments_and_e_strings() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\n\
                   /* outer /* inner; */ still; */ SELECT E'a\\';b';\nSELECT $1;";
        let got = sqls(sql, Backend::Postgres);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].ends_with("LANGUAGE plpgsql"));
        assert!(got[1].ends_with("SELECT E'a\\';b'"));
        assert_eq!(got[2], "SELECT $1");
    }

    #[test]
    fn mysql_delimiter_command() {
        let sql = "CREATE TABLE t (x INT);\nDELIMITER //\nCREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.x = 1; END//\nDELIMITER ;\nSELECT 1;";
        let got = sqls(sql, Backend::MySql);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[1].starts_with("CREATE TRIGGER") && got[1].ends_with("END"));
    }

    #[test]
    fn sqlite_trigger_bodies_stay_whole() {
        let sql = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = CASE WHEN x > 1 THEN 1 ELSE 2 END; DELETE FROM u; END;\nSELECT 1;";
        let got = sqls(sql, Backend::Sqlite);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("END"));
    }

    #[test]
    fn non_ascii_text_is_fine() {
        let got = sqls(
            "-- Serviços ç\nINSERT INTO t VALUES ('Manicure é ótimo; sim');\nSELECT 'ü';",
            Backend::MySql,
        );
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn records_start_lines() {
        let got = split_statements("\n\nSELECT 1;\n  SELECT\n 2;", Backend::Sqlite).unwrap();
        assert_eq!(got[0].line, 3);
        assert_eq!(got[1].line, 4);
    }

    #[test]
    fn unterminated_input_is_an_error_with_its_line() {
        let e = split_statements("SELECT 1;\nSELECT 'oops;\n", Backend::MySql).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unterminated"));
        assert!(split_statements("/* never closed", Backend::Sqlite).is_err());
        assert!(split_statements("SELECT $x$ open", Backend::Postgres).is_err());
    }
}
