//! Runs of a body's text that render differently: bare URLs (which become
//! links) and mentions of me.

use super::markdown::linkable;
use super::wrap::Seg;
use ratatui::style::Style;

/// Splits `text` into runs, marking bare http, https and mailto URLs.
/// A URL starts a word and ends at white space, quotes or angle brackets;
/// trailing punctuation (and an unmatched `)`) stays outside it.
pub fn split_urls(text: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut from = 0;
    let mut prev: Option<char> = None;
    let mut iter = text.char_indices();
    while let Some((i, c)) = iter.next() {
        let starts_word = prev.is_none_or(|p| !(p.is_alphanumeric() || p == '/' || p == '@'));
        prev = Some(c);
        if !starts_word || !matches!(c, 'h' | 'H' | 'm' | 'M') {
            continue;
        }
        let end = text[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`'))
            .map_or(text.len(), |n| i + n);
        let mut url = &text[i..end];
        while let Some(last) = url.chars().last() {
            let unmatched = last == ')' && url.matches('(').count() < url.matches(')').count();
            if unmatched || ".,;:!?'*_".contains(last) {
                url = &url[..url.len() - last.len_utf8()];
            } else {
                break;
            }
        }
        if !linkable(url) || url.ends_with("://") {
            continue;
        }
        if i > from {
            out.push((&text[from..i], false));
        }
        out.push((url, true));
        from = i + url.len();
        prev = url.chars().last();
        while iter.offset() < from && iter.next().is_some() {}
    }
    if from < text.len() || out.is_empty() {
        out.push((&text[from..], false));
    }
    out
}

/// Splits `body` so every `@me` (case-insensitive, whole name) is styled as
/// a mention.
pub fn mention_segments(body: &str, me: &str, base: Style, mention: Style) -> Vec<Seg> {
    if me.is_empty() {
        return vec![(body.to_string(), base)];
    }
    let needle = format!("@{}", me.to_ascii_lowercase());
    let hay = body.to_ascii_lowercase();
    let mut segs = Vec::new();
    let mut from = 0;
    let mut search = 0;
    while let Some(pos) = hay[search..].find(&needle).map(|p| p + search) {
        let end = pos + needle.len();
        let boundary = body[end..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
        if boundary {
            if pos > from {
                segs.push((body[from..pos].to_string(), base));
            }
            segs.push((body[pos..end].to_string(), mention));
            from = end;
        }
        search = end;
    }
    if from < body.len() || segs.is_empty() {
        segs.push((body[from..].to_string(), base));
    }
    segs
}
