use super::*;
use crate::ui::render::wrap::str_width;
use crate::ui::theme::Theme;
use ratatui::style::Color;
use std::sync::Arc;

fn pal() -> Palette {
    Palette::new(&Theme::default(), "me")
}

fn lines_of(body: &str, first: usize, rest: usize) -> Vec<Vec<Span<'static>>> {
    lay_out(&parse(body, &pal()), first, rest, &[])
}

fn text(body: &str, width: usize) -> Vec<String> {
    lines_of(body, width, width)
        .iter()
        .map(|l| l.iter().map(|s| s.content.as_ref()).collect::<String>())
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// The style of the first span holding `needle`.
fn style_of(body: &str, needle: &str) -> Style {
    lines_of(body, 80, 80)
        .into_iter()
        .flatten()
        .find(|s| s.content.contains(needle))
        .map(|s| s.style)
        .unwrap_or_else(|| panic!("{needle:?} not in {body:?}"))
}

#[test]
fn plain_bodies_lay_out_as_plain_wrapped_text() {
    let p = pal();
    for body in [
        "Morning all!",
        "@me can you take the release notes?\nThey are due today.",
        "hello big world, with a   few  spaces and 日本語のテキスト",
        "a\n\nb",
    ] {
        for (first, rest) in [(9, 14), (20, 20), (0, 5), (80, 80)] {
            let segs = mention_segments(body, "me", p.base, p.base.patch(p.mention));
            let plain: Vec<Vec<Span>> = wrap(&segs, first, rest)
                .iter()
                .map(|l| to_spans(l))
                .collect();
            assert_eq!(
                lines_of(body, first, rest),
                plain,
                "{body:?} at {first}/{rest}"
            );
        }
    }
}

#[test]
fn emphasis_strong_strikethrough_and_inline_code() {
    let body = "*it* **bold** ~~gone~~ `code()` ***both***";
    assert_eq!(text(body, 80), vec!["it bold gone code() both"]);
    assert!(style_of(body, "it").add_modifier.contains(Modifier::ITALIC));
    assert!(style_of(body, "bold").add_modifier.contains(Modifier::BOLD));
    assert!(
        style_of(body, "gone")
            .add_modifier
            .contains(Modifier::CROSSED_OUT)
    );
    assert_eq!(style_of(body, "code()").bg, pal().code.bg);
    let both = style_of(body, "both").add_modifier;
    assert!(both.contains(Modifier::BOLD | Modifier::ITALIC));
}

#[test]
fn lists_bullets_numbers_and_nesting() {
    let body = "todo:\n\n- one\n- two that wraps around\n  - nested\n\n3. three\n4. four";
    assert_eq!(
        text(body, 16),
        vec![
            "todo:",
            "",
            "• one",
            "• two that wraps",
            "  around",
            "  • nested",
            "",
            "3. three",
            "4. four",
        ]
    );
}

#[test]
fn quotes_and_headings() {
    let body = "# Title\n\n> quoted words that wrap\n> more\n\nafter";
    assert_eq!(
        text(body, 14),
        vec![
            "Title",
            "",
            "│ quoted words",
            "│ that wrap",
            "│ more",
            "",
            "after"
        ]
    );
    assert!(
        style_of(body, "Title")
            .add_modifier
            .contains(Modifier::BOLD)
    );
    assert_eq!(style_of("> q", "│").fg, pal().dim.fg);
}

#[test]
fn links_show_text_then_url() {
    let body =
        "see [the docs](https://example.org/docs) or <https://x.org> or https://bare.org/a_b. ok";
    assert_eq!(
        text(body, 200),
        vec![
            "see the docs (https://example.org/docs) or https://x.org or https://bare.org/a_b. ok"
        ]
    );
    let doc = parse(body, &pal());
    let shown: Vec<&str> = doc.links.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        shown,
        vec![
            "https://example.org/docs",
            "https://x.org",
            "https://bare.org/a_b"
        ]
    );
    let url = style_of(body, "https://example.org/docs");
    assert!(url.add_modifier.contains(Modifier::UNDERLINED));
    assert!(
        !style_of(body, "the docs")
            .add_modifier
            .contains(Modifier::UNDERLINED)
    );
    let evil = parse("[x](javascript:alert(1))", &pal());
    assert!(evil.links.is_empty());
    assert!(
        !style_of("[x](javascript:alert(1))", "javascript")
            .add_modifier
            .contains(Modifier::UNDERLINED)
    );
}

#[test]
fn bare_urls_are_found_in_words() {
    assert_eq!(
        split_urls("a https://x.org/(b)), mailto:me@x.org! nothttp://y"),
        vec![
            ("a ", false),
            ("https://x.org/(b)", true),
            ("), ", false),
            ("mailto:me@x.org", true),
            ("! nothttp://y", false),
        ]
    );
    assert_eq!(split_urls("http:// alone"), vec![("http:// alone", false)]);
    assert_eq!(split_urls(""), vec![("", false)]);
}

#[test]
fn control_characters_never_survive() {
    let e = "\u{1b}[2J\u{7}\u{9b}\u{202e}\u{2067}";
    let body = format!(
        "# h{e}\n\np{e} *i{e}* **b{e}** `c{e}` [l{e}](https://x.org/{e}) https://y.org/{e}z\n\n\
         - item{e}\n\n> q{e}\n\n```rust\nlet s = \"{e}\";\n```\n\n```\nplain{e}\n```\n<b>{e}</b>"
    );
    let lines = lines_of(&body, 30, 30);
    assert!(lines.len() > 8);
    for span in lines.iter().flatten() {
        assert!(
            !span.content.chars().any(crate::client::text::unsafe_char),
            "{:?}",
            span.content
        );
    }
    for (shown, url) in &parse(&body, &pal()).links {
        assert!(
            !shown
                .chars()
                .chain(url.chars())
                .any(crate::client::text::unsafe_char)
        );
    }
}

#[test]
fn no_line_exceeds_its_width() {
    let body = "日本語のテキスト👍🎉 **mixed** ascii `code` and a_very_long_identifier_without_spaces\n\n\
                - 列表项目很长很长很长\n\n> 引用也很长很长\n\n```\nfn 長い() { let x = \"🎉🎉🎉🎉🎉🎉\"; }\n```";
    for width in 3..30 {
        let lines = lines_of(body, width - 2, width);
        for (n, line) in lines.iter().enumerate() {
            let w: usize = line.iter().map(|s| str_width(&s.content)).sum();
            let limit = if n == 0 { width - 2 } else { width };
            assert!(w <= limit, "line {n} {line:?} is {w} > {limit}");
        }
    }
}

#[test]
fn code_blocks_stand_apart_and_hard_wrap() {
    let body = "look:\n```rust\nfn main() { println!(\"hi\"); }\n```\nthat's it";
    let lines = text(body, 20);
    assert_eq!(
        lines,
        vec![
            "look:",
            "",
            "│ fn main() { printl",
            "↪ n!(\"hi\"); }",
            "",
            "that's it"
        ]
    );
    let code = lines_of(body, 20, 20);
    let row = &code[2];
    let width: usize = row.iter().map(|s| str_width(&s.content)).sum();
    assert_eq!(width, 20, "code rows are padded to the width");
    assert!(row[1..].iter().all(|s| s.style.bg == pal().code_block.bg));
    let fgs: std::collections::HashSet<_> = row[1..].iter().map(|s| s.style.fg).collect();
    assert!(fgs.len() > 1, "highlighted: {row:?}");
    let plain = lines_of("```klingon\nqapla'\n```", 20, 20);
    assert_eq!(
        plain.len(),
        2,
        "an empty line for the sender, then the code"
    );
    assert_eq!(plain[1][1].style, pal().code_block);
}

#[test]
fn trailer_follows_prose_or_gets_its_own_line() {
    let trailer = vec![(" (edited)".to_string(), Style::default().fg(Color::Red))];
    let doc = parse("hi *there*", &pal());
    let lines = lay_out(&doc, 40, 40, &trailer);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0].last().map(|s| s.content.as_ref()),
        Some(" (edited)")
    );
    let doc = parse("```\nx\n```", &pal());
    let lines = lay_out(&doc, 40, 40, &trailer);
    assert_eq!(lines.len(), 3);
    let empty = lay_out(&parse("", &pal()), 40, 40, &[]);
    assert_eq!(empty.len(), 1);
}

#[test]
fn first_fenced_code_block_is_found() {
    assert_eq!(
        first_code_block("a\n```sh\nls -l\necho\n```\n```\nsecond\n```"),
        Some("ls -l\necho\n".into())
    );
    assert_eq!(first_code_block("    indented\n"), None);
    assert_eq!(first_code_block("no code"), None);
}

#[test]
fn mentions_need_a_word_boundary() {
    let b = Style::default();
    let m = Style::default().add_modifier(Modifier::BOLD);
    let segs = mention_segments("hi @Me and @meg, @me!", "me", b, m);
    let marked: Vec<&str> = segs
        .iter()
        .filter(|s| s.1 == m)
        .map(|s| s.0.as_str())
        .collect();
    assert_eq!(marked, vec!["@Me", "@me"]);
    let text: String = segs.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(text, "hi @Me and @meg, @me!");
    let p = pal();
    assert_eq!(style_of("**@me** hi", "@me"), p.base.patch(p.mention));
    assert_eq!(style_of("ask @me_x", "@me"), p.base);
}

#[test]
fn cache_parses_a_body_once_per_palette() {
    let cache = Cache::default();
    let p = pal();
    let a = cache.doc("**x**", &p);
    let b = cache.doc("**x**", &p);
    assert!(Arc::ptr_eq(&a, &b));
    let light = Palette::new(&Theme::builtin("light").expect("light"), "me");
    let c = cache.doc("**x**", &light);
    assert!(!Arc::ptr_eq(&a, &c));
}
