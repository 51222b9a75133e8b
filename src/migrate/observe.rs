//! What a MySQL/MariaDB migration statement leaves behind, and how to tell from the live
//! schema whether it ran. Used when a run resumes an interrupted migration (the one statement
//! that may or may not have completed) and by `repair` before it forgets a migration.
//!
//! Each statement is classified once, from its text:
//! - **DML** (`INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `WITH …`) commits together with the
//!   progress counter, so after a crash it is known not to have run;
//! - **observable** DDL names objects that must be present or absent afterwards (tables,
//!   views, columns, indexes, constraints, triggers, routines);
//! - **rerunnable** statements reach the same state when run twice (`… IF NOT EXISTS`,
//!   `CREATE OR REPLACE`, `MODIFY COLUMN`, table options, session `SET`);
//! - anything else is **opaque**: only a person can tell whether it ran.
//!
//! A statement's verdict assumes MariaDB ≥ 10.6 / MySQL 8.0 atomic DDL: one `ALTER TABLE`
//! with several actions either completes or leaves nothing, so its observable actions agree.

use super::history::{HistoryRow, RowState};
use super::source::Migration;
pub use crate::db::Fact;
use crate::db::{DbError, SchemaSession};

/// What must hold in the live schema once a statement has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub fact: Fact,
    /// `true`: the object exists afterwards; `false`: it is gone.
    pub present: bool,
}

/// How a statement's completion can be told after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Data change: runs in one transaction with the progress counter.
    Dml,
    /// Changes only the session (`SET` without `GLOBAL`/`PERSIST`): lost with the connection,
    /// so a resumed run replays it before continuing.
    Session,
    /// Running it again is harmless.
    Rerunnable,
    /// Its effect is visible in the live schema.
    Observable(Vec<Expect>),
    /// Nothing tells whether it ran (the reason).
    Opaque(String),
}

impl Kind {
    /// True when a crash at this statement needs no person: its completion is known (DML),
    /// harmless to repeat, or visible in the live schema.
    pub fn resumable(&self) -> bool {
        !matches!(self, Kind::Opaque(_))
    }
}

/// Which statements of a migration must have their completion counted in the history row.
///
/// A count costs a commit (a log flush) per statement, as much as small DDL itself, so it is
/// written only where a resumed run needs it. A resumed run scans forward from the last count,
/// and may pass over an uncounted statement only when the live schema shows it ran. So the
/// count may be skipped for an observable statement whose objects no later statement of the
/// migration can change (each later statement is a data change, session state, or observable
/// DDL on other tables). Everything else is counted: data changes (in their transaction),
/// statements that are run again or cannot be checked, and DDL whose effect a later statement
/// could hide. The last statement is always counted.
pub fn counted(kinds: &[Kind]) -> Vec<bool> {
    let tables = |k: &Kind| -> Option<Vec<String>> {
        match k {
            Kind::Observable(expects) => Some(
                expects
                    .iter()
                    .map(|e| match &e.fact {
                        Fact::Table { table, .. }
                        | Fact::Column { table, .. }
                        | Fact::Index { table, .. }
                        | Fact::Constraint { table, .. }
                        | Fact::ForeignKeyOn { table, .. } => table.to_lowercase(),
                        Fact::Trigger { trigger, .. } => format!("trigger {trigger}"),
                        Fact::Routine { routine, .. } => format!("routine {routine}"),
                    })
                    .collect(),
            ),
            _ => None,
        }
    };
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let Some(mine) = tables(k) else {
                return true;
            };
            if i + 1 == kinds.len() {
                return true;
            }
            kinds[i + 1..].iter().any(|later| match later {
                Kind::Dml | Kind::Session => false,
                Kind::Observable(_) => tables(later)
                    .unwrap_or_default()
                    .iter()
                    .any(|t| mine.contains(t)),
                Kind::Rerunnable | Kind::Opaque(_) => true,
            })
        })
        .collect()
}

/// Whether an observed statement ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    NotDone,
    /// The live schema does not say (the reason).
    Unknown(String),
}

/// Decides from the observed presence of each expectation's object.
pub fn verdict(expects: &[Expect], observed: &[bool]) -> Verdict {
    let met = expects
        .iter()
        .zip(observed)
        .filter(|(e, seen)| e.present == **seen)
        .count();
    if met == expects.len() {
        Verdict::Done
    } else if met == 0 {
        Verdict::NotDone
    } else {
        let odd: Vec<String> = expects
            .iter()
            .zip(observed)
            .map(|(e, seen)| format!("{} {}", e.fact, if *seen { "present" } else { "absent" }))
            .collect();
        Verdict::Unknown(format!(
            "the live schema shows it partly done ({})",
            odd.join(", ")
        ))
    }
}

/// What the live schema says of a failed or interrupted migration's effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effects {
    /// Nothing of it stayed (or what may have stayed is harmless to run again).
    None,
    /// Some of it is in the schema (what shows it).
    Present(String),
    /// Nothing tells (why).
    Unknown(String),
}

/// Whether anything of the unfinished migration `row` (file `m`) is in the live schema,
/// before `repair` forgets it. With a count, each statement that ran (and, for an interrupted
/// row, the one in doubt) is looked for: one still visible is evidence, one undone by hand is
/// not, and a data change that ran is unknowable. Without a count (a row from an older
/// version) statements ran in order, so the first one whose completion can be told decides.
pub async fn effects(
    session: &mut dyn SchemaSession,
    row: &HistoryRow,
    m: Option<&Migration>,
) -> Result<Effects, DbError> {
    if session.transactional() {
        return Ok(Effects::None);
    }
    let counted = row.statements_done.map(|k| usize::try_from(k).unwrap_or(0));
    let Some(m) = m else {
        return Ok(if counted == Some(0) && row.state != RowState::Running {
            Effects::None
        } else {
            Effects::Unknown("its file is gone".into())
        });
    };
    let upto = match counted {
        Some(k) if row.state == RowState::Running => k + 1,
        Some(k) => k,
        None => m.statements.len(),
    };
    let mut unknown: Option<String> = None;
    for (i, stmt) in m.statements.iter().enumerate().take(upto) {
        let at = |what: String| format!("statement {} (line {}) {what}", i + 1, stmt.line);
        // With a count, the statement at the count is in doubt (interrupted rows only).
        let ran = counted.is_some_and(|k| i < k);
        match classify(&stmt.sql) {
            Kind::Session | Kind::Rerunnable => {}
            Kind::Dml if counted.is_some() && !ran => {}
            Kind::Dml => {
                unknown.get_or_insert_with(|| {
                    at("changed data, which the schema does not show".into())
                });
                if counted.is_none() {
                    break;
                }
            }
            Kind::Observable(expects) => {
                let facts: Vec<Fact> = expects.iter().map(|e| e.fact.clone()).collect();
                let seen = session.observe(&facts).await?;
                match verdict(&expects, &seen) {
                    Verdict::Done => {
                        let shown = expects
                            .iter()
                            .map(|e| {
                                format!(
                                    "{} {}",
                                    e.fact,
                                    if e.present { "exists" } else { "is gone" }
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Ok(Effects::Present(at(format!("ran: {shown}"))));
                    }
                    Verdict::NotDone if counted.is_none() => break,
                    Verdict::NotDone => {}
                    Verdict::Unknown(why) => {
                        unknown.get_or_insert_with(|| at(why));
                        if counted.is_none() {
                            break;
                        }
                    }
                }
            }
            Kind::Opaque(why) => {
                unknown.get_or_insert_with(|| at(format!("cannot be checked: {why}")));
                if counted.is_none() {
                    break;
                }
            }
        }
    }
    Ok(unknown.map_or(Effects::None, Effects::Unknown))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A bare word, upper-cased for keyword matching, with its original spelling.
    Word(String, String),
    /// A back-quoted or double-quoted identifier.
    Quoted(String),
    /// A string literal, a number or any other single character.
    Other(char),
    Str,
}

fn tokenize(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' || (c == '-' && next == Some('-')) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '`' || c == '"' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        s.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Quoted(s));
        } else if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str);
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(Tok::Word(word.to_ascii_uppercase(), word));
        } else {
            out.push(Tok::Other(c));
            i += 1;
        }
    }
    out
}

/// A cursor over tokens with the few matching helpers the grammar below needs.
struct Cursor<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek_kw(&self) -> Option<&'a str> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(up, _)) => Some(up.as_str()),
            _ => None,
        }
    }

    fn kw(&mut self, k: &str) -> bool {
        if self.peek_kw() == Some(k) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes the keywords in order, or nothing.
    fn kws(&mut self, ks: &[&str]) -> bool {
        let save = self.pos;
        for k in ks {
            if !self.kw(k) {
                self.pos = save;
                return false;
            }
        }
        true
    }

    fn punct(&mut self, c: char) -> bool {
        if self.toks.get(self.pos) == Some(&Tok::Other(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<String> {
        let t = match self.toks.get(self.pos)? {
            Tok::Word(_, orig) => orig.clone(),
            Tok::Quoted(s) => s.clone(),
            _ => return None,
        };
        self.pos += 1;
        Some(t)
    }

    /// `name` or `schema.name`.
    fn qualified(&mut self) -> Option<(Option<String>, String)> {
        let first = self.ident()?;
        if self.punct('.') {
            let second = self.ident()?;
            Some((Some(first), second))
        } else {
            Some((None, first))
        }
    }

    /// Skips `DEFINER = user@host`, `ALGORITHM = …`, `SQL SECURITY …` before a view,
    /// trigger or routine name.
    fn skip_create_options(&mut self) {
        loop {
            if self.kw("DEFINER") {
                self.punct('=');
                // user, optionally @host; each part an identifier or a string.
                self.pos += 1;
                if self.punct('@') {
                    self.pos += 1;
                }
            } else if self.kw("ALGORITHM") {
                self.punct('=');
                self.pos += 1;
            } else if self.kws(&["SQL", "SECURITY"]) {
                self.pos += 1;
            } else {
                return;
            }
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
}

/// Splits `toks` at commas outside parentheses.
fn top_level_items(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Other('(') => depth += 1,
            Tok::Other(')') => depth -= 1,
            Tok::Other(',') if depth == 0 => {
                items.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < toks.len() {
        items.push(&toks[start..]);
    }
    items
}

fn opaque(why: &str) -> Kind {
    Kind::Opaque(why.to_owned())
}

/// Classifies one MySQL/MariaDB statement.
pub fn classify(sql: &str) -> Kind {
    if sql.contains("/*!") || sql.contains("/*M!") {
        return opaque("a MySQL executable comment (/*! … */) is not read");
    }
    let toks = tokenize(sql);
    let mut c = Cursor {
        toks: &toks,
        pos: 0,
    };
    let Some(first) = c.peek_kw() else {
        return Kind::Rerunnable;
    };
    match first {
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH" => Kind::Dml,
        "SELECT" | "DO" | "ANALYZE" | "OPTIMIZE" | "CHECK" | "TRUNCATE" => Kind::Rerunnable,
        // Transaction brackets: each data change commits with its count anyway.
        "START" | "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" => Kind::Rerunnable,
        "LOCK" | "UNLOCK" => Kind::Session,
        "SET" => {
            c.pos += 1;
            match c.peek_kw() {
                Some("GLOBAL" | "PERSIST" | "PERSIST_ONLY") => Kind::Rerunnable,
                _ => Kind::Session,
            }
        }
        "CREATE" => {
            c.pos += 1;
            classify_create(&mut c)
        }
        "DROP" => {
            c.pos += 1;
            classify_drop(&mut c)
        }
        "ALTER" => {
            c.pos += 1;
            c.kw("ONLINE");
            c.kw("IGNORE");
            if !c.kw("TABLE") {
                return opaque("only ALTER TABLE is checked against the live schema");
            }
            classify_alter_table(&mut c)
        }
        "RENAME" => {
            c.pos += 1;
            if !c.kw("TABLE") && !c.kw("TABLES") {
                return opaque("only RENAME TABLE is checked against the live schema");
            }
            let mut expects = Vec::new();
            loop {
                let Some((s1, from)) = c.qualified() else {
                    return opaque("RENAME TABLE could not be read");
                };
                if !c.kw("TO") {
                    return opaque("RENAME TABLE could not be read");
                }
                let Some((s2, to)) = c.qualified() else {
                    return opaque("RENAME TABLE could not be read");
                };
                expects.push(Expect {
                    fact: Fact::Table {
                        schema: s1,
                        table: from,
                    },
                    present: false,
                });
                expects.push(Expect {
                    fact: Fact::Table {
                        schema: s2,
                        table: to,
                    },
                    present: true,
                });
                if !c.punct(',') {
                    break;
                }
            }
            Kind::Observable(expects)
        }
        other => Kind::Opaque(format!(
            "{other} statements cannot be checked in the live schema"
        )),
    }
}

/// The tables and views a statement creates, or renames something to (names as written,
/// without a schema qualifier): what a schema built by the migrations may hold.
pub fn tables_created(sql: &str) -> Vec<String> {
    let toks = tokenize(sql);
    let mut c = Cursor {
        toks: &toks,
        pos: 0,
    };
    match c.peek_kw() {
        Some("CREATE") => {
            c.pos += 1;
            c.kws(&["OR", "REPLACE"]);
            let _ = c.kw("TEMPORARY") || c.kw("TEMP") || c.kw("UNLOGGED");
            c.skip_create_options();
            c.kw("MATERIALIZED");
            if !(c.kw("TABLE") || c.kw("VIEW")) {
                return Vec::new();
            }
            c.kws(&["IF", "NOT", "EXISTS"]);
            c.qualified().map(|(_, t)| vec![t]).unwrap_or_default()
        }
        Some("RENAME") => {
            c.pos += 1;
            if !c.kw("TABLE") && !c.kw("TABLES") {
                return Vec::new();
            }
            let mut made = Vec::new();
            while let Some(_from) = c.qualified() {
                if !c.kw("TO") {
                    break;
                }
                let Some((_, to)) = c.qualified() else { break };
                made.push(to);
                if !c.punct(',') {
                    break;
                }
            }
            made
        }
        Some("ALTER") => {
            // `ALTER TABLE a RENAME TO b` / `RENAME AS b`.
            let words: Vec<&Tok> = toks.iter().collect();
            let at = words.windows(2).position(|w| {
                matches!(w[0], Tok::Word(u, _) if u == "RENAME")
                    && matches!(w[1], Tok::Word(u, _) if u == "TO" || u == "AS")
            });
            let Some(at) = at else { return Vec::new() };
            c.pos = at + 2;
            c.qualified().map(|(_, t)| vec![t]).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn classify_create(c: &mut Cursor<'_>) -> Kind {
    let or_replace = c.kws(&["OR", "REPLACE"]);
    c.kw("TEMPORARY");
    c.skip_create_options();
    let _ = c.kw("UNIQUE") || c.kw("FULLTEXT") || c.kw("SPATIAL");
    let Some(what) = c.peek_kw() else {
        return opaque("CREATE statement could not be read");
    };
    c.pos += 1;
    let if_not_exists = c.kws(&["IF", "NOT", "EXISTS"]);
    if or_replace || if_not_exists {
        return Kind::Rerunnable;
    }
    match what {
        "TABLE" | "VIEW" => match c.qualified() {
            Some((schema, table)) => Kind::Observable(vec![Expect {
                fact: Fact::Table { schema, table },
                present: true,
            }]),
            None => opaque("CREATE TABLE could not be read"),
        },
        "INDEX" => {
            let Some(index) = c.ident() else {
                return opaque("CREATE INDEX could not be read");
            };
            // `USING BTREE` may come before ON.
            while !c.at_end() && !c.kw("ON") {
                c.pos += 1;
            }
            match c.qualified() {
                Some((schema, table)) => Kind::Observable(vec![Expect {
                    fact: Fact::Index {
                        schema,
                        table,
                        index,
                    },
                    present: true,
                }]),
                None => opaque("CREATE INDEX could not be read"),
            }
        }
        "TRIGGER" => match c.qualified() {
            Some((schema, trigger)) => Kind::Observable(vec![Expect {
                fact: Fact::Trigger { schema, trigger },
                present: true,
            }]),
            None => opaque("CREATE TRIGGER could not be read"),
        },
        "PROCEDURE" | "FUNCTION" => match c.qualified() {
            Some((schema, routine)) => Kind::Observable(vec![Expect {
                fact: Fact::Routine { schema, routine },
                present: true,
            }]),
            None => opaque("CREATE PROCEDURE could not be read"),
        },
        other => Kind::Opaque(format!(
            "CREATE {other} cannot be checked in the live schema"
        )),
    }
}

fn classify_drop(c: &mut Cursor<'_>) -> Kind {
    c.kw("TEMPORARY");
    let Some(what) = c.peek_kw() else {
        return opaque("DROP statement could not be read");
    };
    c.pos += 1;
    if c.kws(&["IF", "EXISTS"]) {
        return Kind::Rerunnable;
    }
    let absent = |fact| Expect {
        fact,
        present: false,
    };
    match what {
        "TABLE" | "TABLES" | "VIEW" => {
            let mut expects = Vec::new();
            loop {
                let Some((schema, table)) = c.qualified() else {
                    return opaque("DROP TABLE could not be read");
                };
                expects.push(absent(Fact::Table { schema, table }));
                if !c.punct(',') {
                    break;
                }
            }
            Kind::Observable(expects)
        }
        "INDEX" => {
            let Some(index) = c.ident() else {
                return opaque("DROP INDEX could not be read");
            };
            if !c.kw("ON") {
                return opaque("DROP INDEX could not be read");
            }
            match c.qualified() {
                Some((schema, table)) => Kind::Observable(vec![absent(Fact::Index {
                    schema,
                    table,
                    index,
                })]),
                None => opaque("DROP INDEX could not be read"),
            }
        }
        "TRIGGER" => match c.qualified() {
            Some((schema, trigger)) => {
                Kind::Observable(vec![absent(Fact::Trigger { schema, trigger })])
            }
            None => opaque("DROP TRIGGER could not be read"),
        },
        "PROCEDURE" | "FUNCTION" => match c.qualified() {
            Some((schema, routine)) => {
                Kind::Observable(vec![absent(Fact::Routine { schema, routine })])
            }
            None => opaque("DROP PROCEDURE could not be read"),
        },
        other => Kind::Opaque(format!("DROP {other} cannot be checked in the live schema")),
    }
}

/// One action of an `ALTER TABLE`.
enum Action {
    Expect(Vec<Expect>),
    Rerunnable,
    Opaque(String),
}

fn classify_alter_table(c: &mut Cursor<'_>) -> Kind {
    c.kws(&["IF", "EXISTS"]);
    let Some((schema, table)) = c.qualified() else {
        return opaque("ALTER TABLE could not be read");
    };
    let rest = &c.toks[c.pos..];
    let mut expects = Vec::new();
    let mut opaque_reason = None;
    let mut renamed = None;
    for item in top_level_items(rest) {
        match alter_action(item, &schema, &table) {
            Action::Expect(mut e) => {
                if e.iter().any(|x| {
                    matches!(&x.fact, Fact::Table { table: t, .. } if *t != table) && x.present
                }) {
                    renamed = Some(e.clone());
                }
                expects.append(&mut e);
            }
            Action::Rerunnable => {}
            Action::Opaque(why) => opaque_reason = Some(why),
        }
    }
    // Other actions of a renaming ALTER name the table by its old name: the rename alone
    // tells whether the (atomic) statement ran.
    if let Some(r) = renamed {
        return Kind::Observable(r);
    }
    match (expects.is_empty(), opaque_reason) {
        (false, _) => Kind::Observable(expects),
        (true, None) => Kind::Rerunnable,
        (true, Some(why)) => Kind::Opaque(why),
    }
}

/// `FOREIGN KEY [index] (a, b) REFERENCES [schema.]t (…)` without a constraint name: found by
/// its columns and referenced table.
fn unnamed_foreign_key(c: &mut Cursor<'_>, schema: &Option<String>, table: &str) -> Action {
    if !matches!(c.toks.get(c.pos), Some(Tok::Other('('))) {
        // The index name MySQL gives the key; the constraint itself gets a generated one.
        let _ = c.ident();
    }
    if !c.punct('(') {
        return Action::Opaque("FOREIGN KEY could not be read".into());
    }
    let mut columns = Vec::new();
    loop {
        match c.ident() {
            Some(col) => columns.push(col),
            None => return Action::Opaque("FOREIGN KEY could not be read".into()),
        }
        // `col(10)` prefixes and ASC/DESC do not occur in foreign keys.
        if c.punct(')') {
            break;
        }
        if !c.punct(',') {
            return Action::Opaque("FOREIGN KEY could not be read".into());
        }
    }
    if !c.kw("REFERENCES") {
        return Action::Opaque("FOREIGN KEY could not be read".into());
    }
    match c.qualified() {
        Some((_, referenced)) => Action::Expect(vec![Expect {
            fact: Fact::ForeignKeyOn {
                schema: schema.clone(),
                table: table.to_owned(),
                columns,
                referenced,
            },
            present: true,
        }]),
        None => Action::Opaque("FOREIGN KEY could not be read".into()),
    }
}

fn alter_action(item: &[Tok], schema: &Option<String>, table: &str) -> Action {
    let mut c = Cursor { toks: item, pos: 0 };
    let col = |column: String| Fact::Column {
        schema: schema.clone(),
        table: table.to_owned(),
        column,
    };
    let idx = |index: String| Fact::Index {
        schema: schema.clone(),
        table: table.to_owned(),
        index,
    };
    let con = |constraint: String| Fact::Constraint {
        schema: schema.clone(),
        table: table.to_owned(),
        constraint,
    };
    let present = |fact| Expect {
        fact,
        present: true,
    };
    let absent = |fact| Expect {
        fact,
        present: false,
    };
    let Some(first) = c.peek_kw() else {
        return Action::Rerunnable;
    };
    c.pos += 1;
    match first {
        "ADD" => {
            if c.kw("CONSTRAINT") {
                let name = match c.peek_kw() {
                    Some("PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK") => None,
                    _ => c.ident(),
                };
                if name.is_none() && c.kws(&["FOREIGN", "KEY"]) {
                    return unnamed_foreign_key(&mut c, schema, table);
                }
                if c.kws(&["PRIMARY", "KEY"]) {
                    return Action::Expect(vec![present(idx("PRIMARY".into()))]);
                }
                if c.kw("UNIQUE") {
                    let _ = c.kw("INDEX") || c.kw("KEY");
                    let own = match c.toks.get(c.pos) {
                        Some(Tok::Other('(')) => None,
                        _ => c.ident(),
                    };
                    return match own.or(name) {
                        Some(n) => Action::Expect(vec![present(idx(n))]),
                        None => Action::Opaque("an unnamed UNIQUE key cannot be found".into()),
                    };
                }
                return match name {
                    Some(n) => Action::Expect(vec![present(con(n))]),
                    None => Action::Opaque("an unnamed constraint cannot be found".into()),
                };
            }
            if c.kws(&["PRIMARY", "KEY"]) {
                return Action::Expect(vec![present(idx("PRIMARY".into()))]);
            }
            if c.kws(&["FOREIGN", "KEY"]) {
                return unnamed_foreign_key(&mut c, schema, table);
            }
            if c.kw("CHECK") {
                return Action::Opaque("an unnamed CHECK cannot be found".into());
            }
            let index_kind = c.kw("UNIQUE") | c.kw("FULLTEXT") | c.kw("SPATIAL");
            if c.kw("INDEX") || c.kw("KEY") || index_kind {
                let _ = c.kw("INDEX") || c.kw("KEY");
                if c.kws(&["IF", "NOT", "EXISTS"]) {
                    return Action::Rerunnable;
                }
                return match c.toks.get(c.pos) {
                    Some(Tok::Word(..) | Tok::Quoted(_)) if c.peek_kw() != Some("USING") => {
                        match c.ident() {
                            Some(n) => Action::Expect(vec![present(idx(n))]),
                            None => Action::Opaque("an index without a name".into()),
                        }
                    }
                    _ => Action::Opaque("an unnamed index cannot be found".into()),
                };
            }
            if c.kw("PARTITION") {
                return Action::Opaque("partition changes cannot be checked".into());
            }
            c.kw("COLUMN");
            if c.kws(&["IF", "NOT", "EXISTS"]) {
                return Action::Rerunnable;
            }
            if c.punct('(') {
                // ADD COLUMN (a INT, b INT)
                let inner = &item[c.pos..item.len().saturating_sub(1)];
                let mut e = Vec::new();
                for def in top_level_items(inner) {
                    let mut d = Cursor { toks: def, pos: 0 };
                    match d.ident() {
                        Some(n) => e.push(present(col(n))),
                        None => return Action::Opaque("ADD COLUMN could not be read".into()),
                    }
                }
                return Action::Expect(e);
            }
            match c.ident() {
                Some(n) => Action::Expect(vec![present(col(n))]),
                None => Action::Opaque("ADD could not be read".into()),
            }
        }
        "DROP" => {
            if c.kws(&["PRIMARY", "KEY"]) {
                return Action::Expect(vec![absent(idx("PRIMARY".into()))]);
            }
            if c.kws(&["FOREIGN", "KEY"]) || c.kw("CONSTRAINT") || c.kw("CHECK") {
                if c.kws(&["IF", "EXISTS"]) {
                    return Action::Rerunnable;
                }
                return match c.ident() {
                    Some(n) => Action::Expect(vec![absent(con(n))]),
                    None => Action::Opaque("DROP constraint could not be read".into()),
                };
            }
            if c.kw("INDEX") || c.kw("KEY") {
                if c.kws(&["IF", "EXISTS"]) {
                    return Action::Rerunnable;
                }
                return match c.ident() {
                    Some(n) => Action::Expect(vec![absent(idx(n))]),
                    None => Action::Opaque("DROP INDEX could not be read".into()),
                };
            }
            if c.kw("PARTITION") {
                return Action::Opaque("partition changes cannot be checked".into());
            }
            c.kw("COLUMN");
            if c.kws(&["IF", "EXISTS"]) {
                return Action::Rerunnable;
            }
            match c.ident() {
                Some(n) => Action::Expect(vec![absent(col(n))]),
                None => Action::Opaque("DROP could not be read".into()),
            }
        }
        "MODIFY" => Action::Rerunnable,
        "CHANGE" => {
            c.kw("COLUMN");
            if c.kws(&["IF", "EXISTS"]) {
                return Action::Rerunnable;
            }
            match (c.ident(), c.ident()) {
                (Some(old), Some(new)) if old.eq_ignore_ascii_case(&new) => Action::Rerunnable,
                (Some(old), Some(new)) => Action::Expect(vec![absent(col(old)), present(col(new))]),
                _ => Action::Opaque("CHANGE COLUMN could not be read".into()),
            }
        }
        "RENAME" => {
            if c.kw("COLUMN") {
                if c.kws(&["IF", "EXISTS"]) {
                    return Action::Rerunnable;
                }
                return match (c.ident(), c.kw("TO"), c.ident()) {
                    (Some(old), true, Some(new)) => {
                        Action::Expect(vec![absent(col(old)), present(col(new))])
                    }
                    _ => Action::Opaque("RENAME COLUMN could not be read".into()),
                };
            }
            if c.kw("INDEX") || c.kw("KEY") {
                if c.kws(&["IF", "EXISTS"]) {
                    return Action::Rerunnable;
                }
                return match (c.ident(), c.kw("TO"), c.ident()) {
                    (Some(old), true, Some(new)) => {
                        Action::Expect(vec![absent(idx(old)), present(idx(new))])
                    }
                    _ => Action::Opaque("RENAME INDEX could not be read".into()),
                };
            }
            let _ = c.kw("TO") || c.kw("AS");
            match c.qualified() {
                Some((s2, to)) => Action::Expect(vec![
                    absent(Fact::Table {
                        schema: schema.clone(),
                        table: table.to_owned(),
                    }),
                    present(Fact::Table {
                        schema: s2.or_else(|| schema.clone()),
                        table: to,
                    }),
                ]),
                None => Action::Opaque("RENAME could not be read".into()),
            }
        }
        // ALTER [COLUMN] c SET/DROP DEFAULT, table options, ordering, engine, charset: the
        // same state when run twice.
        "ALTER" | "ENGINE" | "COMMENT" | "AUTO_INCREMENT" | "CONVERT" | "DEFAULT" | "CHARACTER"
        | "CHARSET" | "COLLATE" | "ROW_FORMAT" | "ALGORITHM" | "LOCK" | "FORCE" | "ORDER"
        | "KEY_BLOCK_SIZE" | "STATS_PERSISTENT" | "STATS_AUTO_RECALC" | "PACK_KEYS"
        | "CHECKSUM" | "ENABLE" | "DISABLE" => Action::Rerunnable,
        other => Action::Opaque(format!(
            "ALTER TABLE … {other} cannot be checked in the live schema"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(k: &Kind) -> Vec<(String, bool)> {
        match k {
            Kind::Observable(e) => e.iter().map(|x| (x.fact.to_string(), x.present)).collect(),
            other => panic!("not observable: {other:?}"),
        }
    }

    #[test]
    fn dml_and_session_statements() {
        assert_eq!(classify("INSERT INTO t VALUES (1)"), Kind::Dml);
        assert_eq!(classify("  update t set a = 1"), Kind::Dml);
        assert_eq!(classify("-- note\nDELETE FROM t"), Kind::Dml);
        assert_eq!(classify("SET foreign_key_checks = 0"), Kind::Session);
        assert_eq!(classify("SET GLOBAL x = 1"), Kind::Rerunnable);
    }

    #[test]
    fn tables_views_and_renames() {
        assert_eq!(
            facts(&classify(
                "CREATE TABLE `orders` (id INT PRIMARY KEY, note TEXT)"
            )),
            vec![("table orders".into(), true)]
        );
        assert_eq!(
            classify("CREATE TABLE IF NOT EXISTS t (id INT)"),
            Kind::Rerunnable
        );
        assert_eq!(
            facts(&classify(
                "CREATE ALGORITHM=MERGE DEFINER=`root`@`%` SQL SECURITY INVOKER VIEW v AS SELECT 1"
            )),
            vec![("table v".into(), true)]
        );
        assert_eq!(
            classify("CREATE OR REPLACE VIEW v AS SELECT 1"),
            Kind::Rerunnable
        );
        assert_eq!(
            facts(&classify("DROP TABLE a, `b`")),
            vec![("table a".into(), false), ("table b".into(), false)]
        );
        assert_eq!(
            facts(&classify("RENAME TABLE a TO b, c TO d")),
            vec![
                ("table a".into(), false),
                ("table b".into(), true),
                ("table c".into(), false),
                ("table d".into(), true)
            ]
        );
    }

    #[test]
    fn alter_table_actions() {
        assert_eq!(
            facts(&classify(
                "ALTER TABLE bookings ADD COLUMN notes VARCHAR(200) DEFAULT 'a,b', ADD INDEX ix_n (notes, id)"
            )),
            vec![
                ("column bookings.notes".into(), true),
                ("index bookings.ix_n".into(), true)
            ]
        );
        assert_eq!(
            facts(&classify("ALTER TABLE t RENAME COLUMN a TO b")),
            vec![("column t.a".into(), false), ("column t.b".into(), true)]
        );
        assert_eq!(
            facts(&classify("ALTER TABLE t CHANGE old new INT NOT NULL")),
            vec![
                ("column t.old".into(), false),
                ("column t.new".into(), true)
            ]
        );
        assert_eq!(
            classify("ALTER TABLE t MODIFY COLUMN a BIGINT NOT NULL"),
            Kind::Rerunnable
        );
        assert_eq!(
            facts(&classify(
                "ALTER TABLE t ADD CONSTRAINT fk_t_u FOREIGN KEY (u) REFERENCES users (id)"
            )),
            vec![("constraint t.fk_t_u".into(), true)]
        );
        assert_eq!(
            facts(&classify(
                "ALTER TABLE t DROP FOREIGN KEY fk_t_u, DROP KEY ix"
            )),
            vec![
                ("constraint t.fk_t_u".into(), false),
                ("index t.ix".into(), false)
            ]
        );
        assert_eq!(
            facts(&classify("ALTER TABLE t ADD PRIMARY KEY (id)")),
            vec![("index t.PRIMARY".into(), true)]
        );
        assert_eq!(
            facts(&classify("ALTER TABLE a RENAME TO b")),
            vec![("table a".into(), false), ("table b".into(), true)]
        );
        assert_eq!(
            facts(&classify("ALTER TABLE t ADD COLUMN (x INT, y INT)")),
            vec![("column t.x".into(), true), ("column t.y".into(), true)]
        );
        assert_eq!(
            facts(&classify(
                "ALTER TABLE t ADD FOREIGN KEY (u, `v`) REFERENCES app.users (id, x) ON DELETE CASCADE"
            )),
            vec![("foreign key t(u, v) referencing users".into(), true)]
        );
        assert_eq!(
            facts(&classify(
                "ALTER TABLE t ADD CONSTRAINT FOREIGN KEY ix_u (u) REFERENCES users (id)"
            )),
            vec![("foreign key t(u) referencing users".into(), true)]
        );
        assert!(matches!(
            classify("ALTER TABLE t ADD INDEX (a)"),
            Kind::Opaque(_)
        ));
        // An opaque action next to an observable one: the statement is atomic, the observable
        // one decides.
        assert_eq!(
            facts(&classify("ALTER TABLE t ADD INDEX (a), ADD COLUMN c INT")),
            vec![("column t.c".into(), true)]
        );
    }

    #[test]
    fn indexes_triggers_routines_and_others() {
        assert_eq!(
            facts(&classify("CREATE UNIQUE INDEX ux ON t (a)")),
            vec![("index t.ux".into(), true)]
        );
        assert_eq!(
            facts(&classify("DROP INDEX ux ON t")),
            vec![("index t.ux".into(), false)]
        );
        assert_eq!(
            facts(&classify(
                "CREATE DEFINER=CURRENT_USER TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1"
            )),
            vec![("trigger trg".into(), true)]
        );
        assert_eq!(
            facts(&classify("CREATE PROCEDURE p() BEGIN SELECT 1; END")),
            vec![("routine p".into(), true)]
        );
        assert!(matches!(classify("GRANT ALL ON *.* TO x"), Kind::Opaque(_)));
        assert!(matches!(
            classify("/*!50001 CREATE VIEW v AS SELECT 1 */"),
            Kind::Opaque(_)
        ));
        assert_eq!(classify("START TRANSACTION"), Kind::Rerunnable);
        assert_eq!(classify("LOCK TABLES t WRITE"), Kind::Session);
        assert!(matches!(
            classify("ALTER TABLE t ADD PARTITION (PARTITION p1 VALUES LESS THAN (10))"),
            Kind::Opaque(_)
        ));
        assert_eq!(classify("DROP TABLE IF EXISTS t"), Kind::Rerunnable);
    }

    #[test]
    fn counts_are_kept_where_a_resume_needs_them() {
        let kinds: Vec<Kind> = [
            "DROP TABLE IF EXISTS d",
            "CREATE TABLE a (id INT)",
            "CREATE TABLE b (id INT, a_id INT, FOREIGN KEY (a_id) REFERENCES a (id))",
            "INSERT INTO a VALUES (1)",
            "ALTER TABLE b ADD COLUMN note TEXT",
            "ALTER TABLE b RENAME COLUMN note TO remark",
            "CREATE TABLE c (id INT)",
            "CREATE TABLE e (id INT)",
        ]
        .iter()
        .map(|s| classify(s))
        .collect();
        // The rerunnable DROP, the INSERT and the last statement are always counted. b is
        // changed again later, so its CREATE and first ALTER are counted; a, the RENAME and c
        // are not touched by anything later but data changes and other tables.
        assert_eq!(
            counted(&kinds),
            vec![true, false, true, true, true, false, false, true]
        );
        // A rerunnable statement later could undo anything before it.
        let with_rerun: Vec<Kind> = [
            "CREATE TABLE a (id INT)",
            "DROP TABLE IF EXISTS a",
            "SELECT 1",
        ]
        .iter()
        .map(|s| classify(s))
        .collect();
        assert_eq!(counted(&with_rerun), vec![true, true, true]);
    }

    #[test]
    fn verdicts() {
        let e = vec![
            Expect {
                fact: Fact::Table {
                    schema: None,
                    table: "a".into(),
                },
                present: false,
            },
            Expect {
                fact: Fact::Table {
                    schema: None,
                    table: "b".into(),
                },
                present: true,
            },
        ];
        assert_eq!(verdict(&e, &[false, true]), Verdict::Done);
        assert_eq!(verdict(&e, &[true, false]), Verdict::NotDone);
        assert!(matches!(verdict(&e, &[true, true]), Verdict::Unknown(_)));
    }
}
