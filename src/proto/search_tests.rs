//! Property tests of the search parser against SQLite's own FTS5: whatever
//! a user types either parses into an expression FTS5 accepts (and whose
//! matches hold every word) or is refused with a clear message; it never
//! reaches SQLite as an error.

use super::search::{SearchQuery, snippet, tokens};
use proptest::prelude::*;
use rusqlite::Connection;

/// An in-memory index like chatd's, with a few documents.
fn index() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE VIRTUAL TABLE t USING fts5(body, content='', contentless_delete=1,
             tokenize='unicode61 remove_diacritics 0');
         INSERT INTO t(rowid, body) VALUES
             (1, 'the deploy key is in the vault'),
             (2, 'OR NEAR AND NOT: operators as words'),
             (3, 'quotes \" and stars * and carets ^ and col:on'),
             (4, 'ünïcödé wörds and 数字 123');",
    )
    .unwrap();
    c
}

fn check(c: &Connection, text: &str) {
    match SearchQuery::parse(text) {
        Ok(q) => {
            let Some(expr) = q.fts_match() else {
                assert!(q.terms.is_empty());
                return;
            };
            let rows: Result<Vec<i64>, _> = c
                .prepare("SELECT rowid FROM t WHERE t MATCH ?1")
                .unwrap()
                .query_map([&expr], |r| r.get(0))
                .unwrap()
                .collect();
            let rows = rows.unwrap_or_else(|e| panic!("{text:?} -> {expr:?}: {e}"));
            // Every hit holds every word of the query.
            let docs = [
                "",
                "the deploy key is in the vault",
                "OR NEAR AND NOT: operators as words",
                "quotes \" and stars * and carets ^ and col:on",
                "ünïcödé wörds and 数字 123",
            ];
            for id in rows {
                let have: Vec<String> =
                    tokens(docs[id as usize]).into_iter().map(|t| t.2).collect();
                for w in q.words() {
                    assert!(have.contains(&w), "{text:?} matched doc {id} without {w:?}");
                }
                let (s, h) = snippet(docs[id as usize], &q.words());
                for [a, b] in h {
                    assert!(s.is_char_boundary(a) && s.is_char_boundary(b) && a < b);
                }
            }
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn any_text_is_a_safe_expression_or_a_clear_error(text in ".{0,120}") {
        check(&index(), &text);
    }

    #[test]
    fn fts_syntax_soup_is_safe(parts in proptest::collection::vec(
        prop_oneof![
            Just("\"".to_string()), Just("*".to_string()), Just("OR".to_string()),
            Just("NEAR(".to_string()), Just(")".to_string()), Just("^".to_string()),
            Just(":".to_string()), Just("-".to_string()), Just("+".to_string()),
            Just("{body}".to_string()), Just("from:".to_string()), Just("in:#".to_string()),
            Just("before:2026-01-01".to_string()), Just("\0".to_string()),
            Just("deploy".to_string()), Just("key".to_string()), Just(" ".to_string()),
            "[a-zA-Z0-9]{1,6}",
        ], 0..14)) {
        check(&index(), &parts.concat());
    }

    #[test]
    fn snippets_hold_their_ranges(body in ".{0,400}", words in proptest::collection::vec("[a-z0-9]{1,4}", 0..4)) {
        let (s, h) = snippet(&body, &words);
        prop_assert!(!s.chars().any(|c| c.is_control()));
        for [a, b] in h {
            prop_assert!(s.is_char_boundary(a) && s.is_char_boundary(b) && a < b && b <= s.len());
            prop_assert!(words.contains(&s[a..b].to_lowercase()));
        }
    }
}

#[test]
fn fts5_is_built_in_with_contentless_delete() {
    let c = index();
    c.execute("DELETE FROM t WHERE rowid = 1", []).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM t WHERE t MATCH '\"vault\"'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}
