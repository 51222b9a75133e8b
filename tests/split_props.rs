//! Properties of the SQL splitter, for every dialect: arbitrary input never panics (it splits
//! or reports a line), and statements built from the tricky parts (quotes with `;` inside,
//! comments, PostgreSQL dollar quotes, MySQL `DELIMITER` blocks) joined with `;` split back
//! into exactly themselves.

use proptest::prelude::*;
use tenant_migrator::db::Backend;
use tenant_migrator::migrate::split::split_statements;

fn backend() -> impl Strategy<Value = Backend> {
    prop_oneof![
        Just(Backend::MySql),
        Just(Backend::Postgres),
        Just(Backend::Sqlite)
    ]
}

/// Text that may hold anything a lexer trips on, including `;`, quotes and comment starts.
fn nasty_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(";".to_owned()),
            Just("'".to_owned()),
            Just("''".to_owned()),
            Just("\"".to_owned()),
            Just("`".to_owned()),
            Just("--".to_owned()),
            Just("#".to_owned()),
            Just("/*".to_owned()),
            Just("*/".to_owned()),
            Just("$$".to_owned()),
            Just("$a$".to_owned()),
            Just("\\".to_owned()),
            Just("\n".to_owned()),
            Just("DELIMITER ".to_owned()),
            Just("BEGIN".to_owned()),
            Just("END".to_owned()),
            "[a-zA-Z0-9 çé()]{0,6}",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// One piece of a statement that is code on every dialect, with its own `;` kept inside.
fn piece(b: Backend) -> BoxedStrategy<String> {
    let word = "[A-Za-z_][A-Za-z0-9_]{0,8}".prop_map(|w| w);
    // Inside single quotes: any of these, `'` doubled.
    let quoted = "[a-z0-9 ;#/*$-]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''")));
    let semi_in_string = "[a-z ]{0,5}".prop_map(|s| format!("'{s};{s}'"));
    let mut options: Vec<BoxedStrategy<String>> = vec![
        word.boxed(),
        quoted.boxed(),
        semi_in_string.boxed(),
        Just("(1, 2)".to_owned()).boxed(),
        "[a-z ;']{0,10}"
            .prop_map(|s| format!("/* {} */", s.replace("*/", "")))
            .boxed(),
        "[a-z ;'`\"]{0,10}"
            .prop_map(|s| format!("-- {s}\n"))
            .boxed(),
    ];
    match b {
        Backend::MySql => {
            options.push(
                "[a-z ;']{0,8}"
                    .prop_map(|s| format!("`{}`", s.replace('`', "")))
                    .boxed(),
            );
            options.push("[a-z ;']{0,8}".prop_map(|s| format!("# {s}\n")).boxed());
        }
        Backend::Postgres => {
            options.push(
                "[ac-z ;'$]{0,12}"
                    .prop_map(|s| format!("$body${}$body$", s.replace("$body$", "")))
                    .boxed(),
            );
            options.push(
                "[a-z ;']{0,8}"
                    .prop_map(|s| format!("\"{}\"", s.replace('"', "")))
                    .boxed(),
            );
        }
        Backend::Sqlite => {
            options.push(
                "[a-z ;']{0,8}"
                    .prop_map(|s| format!("\"{}\"", s.replace('"', "")))
                    .boxed(),
            );
        }
    }
    proptest::strategy::Union::new(options).boxed()
}

/// A statement: a keyword, then pieces separated by spaces, ending in code (not a comment).
fn statement(b: Backend) -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("SELECT"),
            Just("INSERT INTO t VALUES"),
            Just("UPDATE t SET x =")
        ],
        proptest::collection::vec(piece(b), 0..6),
        "[a-z][a-z0-9]{0,5}",
    )
        .prop_map(|(head, pieces, tail)| {
            let mut s = head.to_owned();
            for p in pieces {
                s.push(' ');
                s.push_str(&p);
            }
            s.push(' ');
            s.push_str(&tail);
            s
        })
}

fn split_texts(sql: &str, b: Backend) -> Vec<String> {
    split_statements(sql, b)
        .unwrap_or_else(|e| panic!("{b:?} could not split {sql:?}: {e}"))
        .into_iter()
        .map(|s| s.sql)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics(b in backend(), sql in nasty_text()) {
        match split_statements(&sql, b) {
            Ok(statements) => {
                for s in statements {
                    prop_assert!(s.line >= 1);
                    prop_assert!(!s.sql.trim().is_empty());
                }
            }
            Err(e) => prop_assert!(e.line >= 1 && e.line <= sql.lines().count().max(1) + 1),
        }
    }

    #[test]
    fn arbitrary_unicode_never_panics(b in backend(), sql in "\\PC{0,200}") {
        let _ = split_statements(&sql, b);
    }

    #[test]
    fn joined_statements_split_back(
        (b, statements) in backend().prop_flat_map(|b| {
            (Just(b), proptest::collection::vec(statement(b), 1..8))
        }),
        trailing in prop_oneof![Just(";"), Just(";\n"), Just(""), Just(";\n-- done\n")],
    ) {
        let sql = format!("{}{trailing}", statements.join(";\n"));
        let got = split_texts(&sql, b);
        let want: Vec<String> = statements.iter().map(|s| s.trim().to_owned()).collect();
        prop_assert_eq!(got, want, "{:?}", sql);
    }

    #[test]
    fn mysql_delimiter_blocks_split_back(
        before in proptest::collection::vec(statement(Backend::MySql), 0..3),
        body in proptest::collection::vec(statement(Backend::MySql), 1..4),
        after in proptest::collection::vec(statement(Backend::MySql), 0..3),
    ) {
        let routine = format!(
            "CREATE PROCEDURE p() BEGIN {}; END",
            body.join("; ")
        );
        let mut sql = String::new();
        for s in &before {
            sql.push_str(&format!("{s};\n"));
        }
        sql.push_str(&format!("DELIMITER //\n{routine}//\nDELIMITER ;\n"));
        for s in &after {
            sql.push_str(&format!("{s};\n"));
        }
        let mut want: Vec<String> = before.iter().map(|s| s.trim().to_owned()).collect();
        want.push(routine);
        want.extend(after.iter().map(|s| s.trim().to_owned()));
        prop_assert_eq!(split_texts(&sql, Backend::MySql), want, "{:?}", sql);
    }
}
