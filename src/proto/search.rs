//! The search query language, shared by chatd and the client so that a
//! query means the same thing online and offline.
//!
//! A query is words and `"quoted phrases"` (all must match) and filters:
//! `from:USER`, `in:#channel`, `in:@user` (a DM), `in:name` (a group or a
//! channel), `before:YYYY-MM-DD`, `after:YYYY-MM-DD` (UTC days). A filter
//! value may be quoted (`in:"release team"`). Any other `word:` is a plain
//! word. [`SearchQuery::parse`] reads one; [`SearchQuery::fts_match`] turns
//! its words into an FTS5 `MATCH` expression in which every word is a
//! quoted string, so user text can never be FTS5 syntax. An empty query is
//! an error; a query of filters alone is accepted and lists the messages
//! that pass them.
//!
//! [`snippet`] cuts the part of a message to show around what matched and
//! says, as byte ranges, which words matched: no marker characters are put
//! into the text, and control characters are replaced by spaces.

use super::error::ProtoError;
use super::types::Millis;

/// The longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 512;

/// The most words and phrases in one query.
pub const MAX_QUERY_TERMS: usize = 16;

/// A parsed search query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words and phrases, each as the user wrote it (control characters
    /// removed); each must match.
    pub terms: Vec<String>,
    /// `from:USER`.
    pub from: Option<String>,
    /// `in:…`.
    pub within: Option<Place>,
    /// `before:DAY`: messages sent before that day began (UTC), in ms.
    pub before: Option<Millis>,
    /// `after:DAY`: messages sent after that day ended (UTC), in ms; the
    /// bound is inclusive (`ts >= after`).
    pub after: Option<Millis>,
}

/// Where `in:` looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `in:#name`: the channel of that name.
    Channel(String),
    /// `in:@user`: the DM with that user.
    Dm(String),
    /// `in:name`: the group or channel of that name.
    Named(String),
}

fn invalid(msg: impl Into<String>) -> ProtoError {
    ProtoError::invalid(msg)
}

/// The words of `text` as the index splits them (letters and digits,
/// lowercased), with their byte ranges in `text`.
pub fn tokens(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i, text[s..i].to_lowercase()));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len(), text[s..].to_lowercase()));
    }
    out
}

/// One lexical piece of a query: a bare word or a quoted phrase.
enum Piece {
    Word(String),
    Phrase(String),
    Filter(String, String),
}

const FILTERS: &[&str] = &["from", "in", "before", "after"];

/// Split a query into pieces: `"…"` is a phrase (an unclosed quote runs to
/// the end), `key:value` with a known key a filter (its value may be
/// quoted), anything else between spaces a word.
fn lex(text: &str) -> Vec<Piece> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let quoted = |i: &mut usize| {
        // `chars[*i]` is the opening quote.
        *i += 1;
        let start = *i;
        while *i < chars.len() && chars[*i] != '"' {
            *i += 1;
        }
        let s: String = chars[start..*i].iter().collect();
        *i += 1;
        s
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' {
            out.push(Piece::Phrase(quoted(&mut i)));
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ':' {
            i += 1;
        }
        let head: String = chars[start..i].iter().collect();
        if i < chars.len() && chars[i] == ':' && FILTERS.contains(&head.to_lowercase().as_str()) {
            i += 1;
            let value = if i < chars.len() && chars[i] == '"' {
                quoted(&mut i)
            } else {
                let vs = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[vs..i].iter().collect()
            };
            out.push(Piece::Filter(head.to_lowercase(), value));
            continue;
        }
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        out.push(Piece::Word(chars[start..i].iter().collect()));
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The start (UTC, in ms) of the day `YYYY-MM-DD`.
pub fn day_start(text: &str) -> Option<Millis> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse::<i64>().ok())?
    };
    let (y, m, d) = (num(&text[..4])?, num(&text[5..7])?, num(&text[8..])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS)
}

/// `text` with control characters (and bidi controls) as spaces.
pub fn scrub(text: &str) -> String {
    text.chars()
        .map(|c| if unsafe_char(c) { ' ' } else { c })
        .collect()
}

fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl SearchQuery {
    /// Read a query; a clear error when it is empty, too long, or a filter
    /// is malformed.
    pub fn parse(text: &str) -> Result<SearchQuery, ProtoError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(invalid(format!(
                "the search is too long (at most {MAX_QUERY_BYTES} bytes)"
            )));
        }
        let mut q = SearchQuery::default();
        for piece in lex(&scrub(text)) {
            match piece {
                Piece::Word(w) | Piece::Phrase(w) => {
                    // Words the index cannot hold (punctuation alone)
                    // would match nothing: they are left out.
                    if !tokens(&w).is_empty() {
                        q.terms.push(w.trim().to_string());
                    }
                }
                Piece::Filter(key, value) => q.filter(&key, value.trim())?,
            }
        }
        if q.terms.len() > MAX_QUERY_TERMS {
            return Err(invalid(format!(
                "the search has too many words (at most {MAX_QUERY_TERMS})"
            )));
        }
        if q.terms.is_empty() && !q.has_filters() {
            return Err(invalid(
                "nothing to search for: give words, \"a phrase\", or a filter such as from:USER",
            ));
        }
        if let (Some(b), Some(a)) = (q.before, q.after)
            && a >= b
        {
            return Err(invalid(
                "after: is not before before:, so nothing can match",
            ));
        }
        Ok(q)
    }

    fn filter(&mut self, key: &str, value: &str) -> Result<(), ProtoError> {
        if value.is_empty() {
            return Err(invalid(format!("{key}: needs a value")));
        }
        let once = |set: bool| {
            if set {
                Err(invalid(format!("{key}: may be given once")))
            } else {
                Ok(())
            }
        };
        match key {
            "from" => {
                once(self.from.is_some())?;
                self.from = Some(value.trim_start_matches('@').to_lowercase());
            }
            "in" => {
                once(self.within.is_some())?;
                self.within = Some(if let Some(n) = value.strip_prefix('#') {
                    Place::Channel(n.to_string())
                } else if let Some(u) = value.strip_prefix('@') {
                    Place::Dm(u.to_lowercase())
                } else {
                    Place::Named(value.to_string())
                });
            }
            "before" | "after" => {
                let day = day_start(value).ok_or_else(|| {
                    invalid(format!("{key}: takes a day as YYYY-MM-DD, not {value:?}"))
                })?;
                if key == "before" {
                    once(self.before.is_some())?;
                    self.before = Some(day);
                } else {
                    once(self.after.is_some())?;
                    self.after = Some(day + DAY_MS);
                }
            }
            _ => return Err(invalid(format!("unknown filter {key}:"))),
        }
        Ok(())
    }

    fn has_filters(&self) -> bool {
        self.from.is_some()
            || self.within.is_some()
            || self.before.is_some()
            || self.after.is_some()
    }

    /// The FTS5 `MATCH` expression of the words, `None` for a query of
    /// filters alone. Each word or phrase becomes one FTS5 string (double
    /// quotes doubled inside), and strings side by side must all match:
    /// nothing the user typed is read as FTS5 syntax.
    pub fn fts_match(&self) -> Option<String> {
        if self.terms.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
            .collect();
        Some(parts.join(" "))
    }

    /// The lowercased words to highlight.
    pub fn words(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.terms {
            for (_, _, w) in tokens(t) {
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        out
    }

    /// Whether a message sent by `sender` at `ts` passes `from:`, `before:`
    /// and `after:` (`in:` is resolved by the caller, which knows the
    /// conversations).
    pub fn admits(&self, sender: &str, ts: Millis) -> bool {
        self.from.as_deref().is_none_or(|f| f == sender)
            && self.before.is_none_or(|b| ts < b)
            && self.after.is_none_or(|a| ts >= a)
    }
}

/// The most characters of a message a snippet shows.
pub const SNIPPET_CHARS: usize = 160;

/// Characters shown before the first match when a message is cut.
const LEAD_CHARS: usize = 40;

/// The part of `body` to show for a hit and the byte ranges in it of the
/// words of `words` (lowercased, as [`SearchQuery::words`] gives them).
/// Control characters become spaces; a cut is marked with `…`.
pub fn snippet(body: &str, words: &[String]) -> (String, Vec<[usize; 2]>) {
    let text = scrub(body);
    let found: Vec<(usize, usize)> = tokens(&text)
        .into_iter()
        .filter(|(_, _, w)| words.contains(w))
        .map(|(s, e, _)| (s, e))
        .collect();
    let total = text.chars().count();
    let (from, to) = if total <= SNIPPET_CHARS {
        (0, text.len())
    } else {
        let first = found.first().map_or(0, |f| f.0);
        let first_char = text[..first].chars().count();
        let start_char = first_char
            .saturating_sub(LEAD_CHARS)
            .min(total - SNIPPET_CHARS);
        let byte_at = |n: usize| text.char_indices().nth(n).map_or(text.len(), |(i, _)| i);
        (byte_at(start_char), byte_at(start_char + SNIPPET_CHARS))
    };
    let lead = if from > 0 { "…" } else { "" };
    let tail = if to < text.len() { "…" } else { "" };
    let out = format!("{lead}{}{tail}", &text[from..to]);
    let shift = lead.len();
    let ranges = found
        .into_iter()
        .filter(|&(s, e)| s >= from && e <= to)
        .map(|(s, e)| [s - from + shift, e - from + shift])
        .collect();
    (out, ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> SearchQuery {
        SearchQuery::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    #[test]
    fn words_phrases_and_filters() {
        let query = q(r#"deploy "the key" from:Alice in:#ops before:2026-12-02 after:2026-11-30"#);
        assert_eq!(query.terms, ["deploy", "the key"]);
        assert_eq!(query.from.as_deref(), Some("alice"));
        assert_eq!(query.within, Some(Place::Channel("ops".into())));
        assert_eq!(query.before, day_start("2026-12-02"));
        assert_eq!(query.after, day_start("2026-12-01"));
        assert_eq!(query.fts_match().as_deref(), Some(r#""deploy" "the key""#));
        assert_eq!(q("in:@bob x").within, Some(Place::Dm("bob".into())));
        assert_eq!(
            q(r#"in:"release team" x"#).within,
            Some(Place::Named("release team".into()))
        );
    }

    #[test]
    fn unknown_prefixes_are_words() {
        let query = q("foo:bar");
        assert_eq!(query.terms, ["foo:bar"]);
        assert_eq!(query.fts_match().as_deref(), Some(r#""foo:bar""#));
    }

    #[test]
    fn fts_syntax_is_quoted() {
        let query = q(r#"a* OR NEAR(b c) "x""y" -z ^w col:v"#);
        let m = query.fts_match().unwrap();
        assert!(m.starts_with(r#""a*" "OR" "NEAR(b" "c)""#), "{m}");
    }

    #[test]
    fn errors_are_clear() {
        for (text, says) in [
            ("", "nothing to search for"),
            ("   !!! ", "nothing to search for"),
            ("from:", "needs a value"),
            ("x before:2026-02-30", "YYYY-MM-DD"),
            ("x after:yesterday", "YYYY-MM-DD"),
            ("from:a from:b", "once"),
            ("x after:2026-12-01 before:2026-12-01", "nothing can match"),
        ] {
            let e = SearchQuery::parse(text).unwrap_err();
            assert!(e.message.contains(says), "{text:?}: {}", e.message);
        }
        assert!(SearchQuery::parse(&"a ".repeat(300)).is_err());
        assert!(SearchQuery::parse(&"w ".repeat(17)).is_err());
        // Filters alone are a query.
        assert!(q("from:alice").fts_match().is_none());
    }

    #[test]
    fn days_are_utc() {
        assert_eq!(day_start("1970-01-01"), Some(0));
        assert_eq!(day_start("2000-03-01"), Some(951_868_800_000));
        assert_eq!(day_start("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(day_start("2023-02-29"), None);
    }

    #[test]
    fn snippets_mark_words_by_byte_range() {
        let words = q("deploy KEY").words();
        let (s, h) = snippet("the deploy key\nis in the vault", &words);
        assert_eq!(s, "the deploy key is in the vault");
        assert_eq!(h, [[4, 10], [11, 14]]);
        let long = format!("{} the deploy key {}", "é".repeat(300), "x".repeat(300));
        let (s, h) = snippet(&long, &words);
        assert!(s.starts_with('…') && s.ends_with('…'));
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 2);
        for [a, b] in h {
            assert!(["deploy", "key"].contains(&&s[a..b]), "{}", &s[a..b]);
        }
    }
}
