//! Syntax highlighting of fenced code with `syntect`. The syntax and theme
//! sets load once, on first use; a language nobody knows, or a grammar that
//! fails on a line, gives plain text in the base style. Output is per-line
//! styled segments with control characters removed and tabs expanded.

use super::wrap::Seg;
use crate::client::text::unsafe_char;
use ratatui::style::{Color, Modifier, Style};
use std::sync::LazyLock;
use syntect::easy::HighlightLines;
use syntect::highlighting::{FontStyle, ThemeSet};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

static SYNTAXES: LazyLock<SyntaxSet> = LazyLock::new(SyntaxSet::load_defaults_newlines);
static THEMES: LazyLock<ThemeSet> = LazyLock::new(ThemeSet::load_defaults);

/// The highlight theme used when the configured name is not a built-in one.
pub const FALLBACK_THEME: &str = "base16-ocean.dark";

/// Columns a tab stands for inside code.
const TAB: &str = "    ";

/// `code` split into lines of styled segments. `lang` is the fence's info
/// word (`rust`, `py`, `sh`…); `theme` a syntect theme name.
pub fn highlight(code: &str, lang: Option<&str>, theme: &str, base: Style) -> Vec<Vec<Seg>> {
    let syntax = lang
        .filter(|l| !l.is_empty())
        .and_then(|l| SYNTAXES.find_syntax_by_token(l));
    let Some(syntax) = syntax else {
        return plain(code, base);
    };
    let Some(theme) = THEMES
        .themes
        .get(theme)
        .or_else(|| THEMES.themes.get(FALLBACK_THEME))
    else {
        return plain(code, base);
    };
    let mut h = HighlightLines::new(syntax, theme);
    let mut out = Vec::new();
    for line in LinesWithEndings::from(code) {
        match h.highlight_line(line, &SYNTAXES) {
            Ok(ranges) => out.push(
                ranges
                    .into_iter()
                    .map(|(st, text)| (clean(text), base.patch(style_of(st))))
                    .filter(|(text, _)| !text.is_empty())
                    .collect(),
            ),
            Err(_) => out.push(vec![(clean(line), base)]),
        }
    }
    out
}

/// `code` as unstyled lines.
pub fn plain(code: &str, base: Style) -> Vec<Vec<Seg>> {
    code.lines().map(|l| vec![(clean(l), base)]).collect()
}

fn style_of(st: syntect::highlighting::Style) -> Style {
    let fg = st.foreground;
    let mut style = Style::default().fg(Color::Rgb(fg.r, fg.g, fg.b));
    if st.font_style.contains(FontStyle::BOLD) {
        style = style.add_modifier(Modifier::BOLD);
    }
    if st.font_style.contains(FontStyle::ITALIC) {
        style = style.add_modifier(Modifier::ITALIC);
    }
    style
}

/// Removes control characters (newlines included) and expands tabs.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str(TAB),
            c if unsafe_char(c) => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[Vec<Seg>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.iter().map(|s| s.0.as_str()).collect())
            .collect()
    }

    #[test]
    fn known_language_gets_colours() {
        let lines = highlight(
            "fn main() {\n\tlet x = 1;\n}\n",
            Some("rust"),
            "",
            Style::default(),
        );
        assert_eq!(text(&lines), vec!["fn main() {", "    let x = 1;", "}"]);
        let colours: std::collections::HashSet<_> = lines
            .iter()
            .flatten()
            .map(|s| format!("{:?}", s.1.fg))
            .collect();
        assert!(colours.len() > 1, "{colours:?}");
    }

    #[test]
    fn unknown_language_is_plain_and_clean() {
        let base = Style::default().fg(Color::Red);
        let lines = highlight("a\x1b[31mb\x07\nc", Some("nosuchlang"), "x", base);
        assert_eq!(text(&lines), vec!["a[31mb", "c"]);
        assert!(lines.iter().flatten().all(|s| s.1 == base));
    }
}
