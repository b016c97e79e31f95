//! Word wrapping of styled text by display width (`unicode-width`): wide
//! characters (CJK, emoji) are never split and no line exceeds its width;
//! words longer than a line break between characters; `\n` breaks hard.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A run of text in one style.
pub type Seg = (String, Style);

pub fn char_width(c: char) -> usize {
    if c == '\t' { 1 } else { c.width().unwrap_or(0) }
}

pub fn str_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Word,
    Space,
    Newline,
}

/// Splits segments into tokens of styled chars.
fn tokens(segs: &[Seg]) -> Vec<(Tok, Vec<(char, Style)>)> {
    let mut out: Vec<(Tok, Vec<(char, Style)>)> = Vec::new();
    for (text, style) in segs {
        for c in text.chars() {
            let kind = match c {
                '\n' => Tok::Newline,
                c if c.is_whitespace() => Tok::Space,
                _ => Tok::Word,
            };
            let c = if c == '\t' { ' ' } else { c };
            match out.last_mut() {
                Some((k, chars)) if *k == kind && kind != Tok::Newline => chars.push((c, *style)),
                _ => out.push((kind, vec![(c, *style)])),
            }
        }
    }
    out
}

/// Wraps `segs` into lines: the first line holds at most `first` columns,
/// the others at most `rest`. Returns at least one (possibly empty) line.
pub fn wrap(segs: &[Seg], first: usize, rest: usize) -> Vec<Vec<(char, Style)>> {
    let rest = rest.max(1);
    let mut lines: Vec<Vec<(char, Style)>> = vec![Vec::new()];
    let mut used = 0usize;
    let mut limit = first;
    if first == 0 {
        lines.push(Vec::new());
        limit = rest;
    }
    let newline = |lines: &mut Vec<Vec<(char, Style)>>, used: &mut usize, limit: &mut usize| {
        lines.push(Vec::new());
        *used = 0;
        *limit = rest;
    };
    for (kind, chars) in tokens(segs) {
        let w: usize = chars.iter().map(|(c, _)| char_width(*c)).sum();
        match kind {
            Tok::Newline => newline(&mut lines, &mut used, &mut limit),
            Tok::Space => {
                if used + w <= limit {
                    if let Some(l) = lines.last_mut() {
                        l.extend(chars);
                    }
                    used += w;
                } else if used > 0 {
                    newline(&mut lines, &mut used, &mut limit);
                }
            }
            Tok::Word => {
                if used + w > limit && used > 0 && w <= rest {
                    newline(&mut lines, &mut used, &mut limit);
                    trim_trailing_space(&mut lines);
                }
                for (c, style) in chars {
                    let cw = char_width(c);
                    if used + cw > limit && used > 0 {
                        newline(&mut lines, &mut used, &mut limit);
                    }
                    if cw > limit {
                        continue;
                    }
                    if let Some(l) = lines.last_mut() {
                        l.push((c, style));
                    }
                    used += cw;
                }
            }
        }
    }
    trim_trailing_space(&mut lines);
    lines
}

/// Removes trailing spaces from every line but the last.
fn trim_trailing_space(lines: &mut [Vec<(char, Style)>]) {
    let n = lines.len();
    for line in lines.iter_mut().take(n.saturating_sub(1)) {
        while line.last().is_some_and(|(c, _)| *c == ' ') {
            line.pop();
        }
    }
}

/// Styled chars to spans, merging runs of one style.
pub fn to_spans(chars: &[(char, Style)]) -> Vec<Span<'static>> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut buf = String::new();
    let mut cur: Option<Style> = None;
    for (c, style) in chars {
        if cur.is_some_and(|s| s != *style) {
            spans.push(Span::styled(
                std::mem::take(&mut buf),
                cur.unwrap_or_default(),
            ));
        }
        cur = Some(*style);
        buf.push(*c);
    }
    if let Some(style) = cur {
        spans.push(Span::styled(buf, style));
    }
    spans
}

/// Cuts `s` to at most `width` columns, ending with `…` when cut.
pub fn truncate(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// Pads a line with spaces in `style` to `width` columns.
pub fn pad(line: &mut Line<'static>, width: usize, style: Style) {
    let w = line.width();
    if w < width {
        line.spans.push(Span::styled(" ".repeat(width - w), style));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Vec<(char, Style)>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.iter().map(|(c, _)| *c).collect())
            .collect()
    }

    fn w(text: &str, first: usize, rest: usize) -> Vec<String> {
        plain(&wrap(&[(text.to_string(), Style::default())], first, rest))
    }

    #[test]
    fn wraps_words() {
        assert_eq!(w("hello big world", 9, 9), vec!["hello big", "world"]);
        assert_eq!(w("hello world", 3, 20), vec!["hel", "lo world"]);
        assert_eq!(w("a\nb", 10, 10), vec!["a", "b"]);
        assert_eq!(w("", 10, 10), vec![""]);
        assert_eq!(w("ab", 0, 5), vec!["", "ab"]);
    }

    #[test]
    fn never_splits_or_overflows_wide_chars() {
        for width in 1..12 {
            for line in w("日本語のテキスト👍🎉 mixed ascii", width, width) {
                assert!(str_width(&line) <= width, "{line:?} > {width}");
            }
        }
        assert_eq!(w("日本語", 5, 5), vec!["日本", "語"]);
        assert_eq!(truncate("日本語", 4), "日…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
