//! Message bodies as CommonMark (`pulldown-cmark`): emphasis, strong,
//! strikethrough, inline code, links (text, then the URL where it differs),
//! bullet and numbered lists, block quotes, headings as bold lines, rules,
//! and fenced code highlighted by [`super::highlight`].
//!
//! Two steps, both pure. [`parse`] turns a body into a width-independent
//! [`Doc`] of blocks (the costly part, which [`Cache`] keeps per body);
//! [`lay_out`] wraps a `Doc` to a width. Prose wraps like plain text did
//! before (so a body without markdown looks the same), and single newlines
//! stay line breaks as chat users expect; code lines are never re-wrapped
//! as prose but hard-wrapped behind a `↪` gutter mark. Every piece of text
//! loses its control characters on the way in.

use super::highlight;
use super::wrap::{Seg, str_width, to_spans, wrap};
use crate::client::text::unsafe_char;
use crate::ui::theme::Theme;
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use unicode_width::UnicodeWidthChar;

pub use super::body_text::{mention_segments, split_urls};
pub use super::markdown_cache::Cache;

/// The gutter before a code line, and before the rest of a cut code line.
const GUTTER: &str = "│ ";
const GUTTER_MORE: &str = "↪ ";
const QUOTE_BAR: &str = "│ ";
const BULLET: &str = "• ";

/// The styles a body is drawn in, and who "me" is for mentions.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    pub base: Style,
    pub mention: Style,
    pub me: String,
    /// A link's text when it differs from its URL.
    pub link: Style,
    /// A URL that can be followed (http, https, mailto).
    pub url: Style,
    pub code: Style,
    pub code_block: Style,
    pub dim: Style,
    /// The syntect theme for code blocks.
    pub syntax: String,
}

impl Palette {
    pub fn new(theme: &Theme, me: &str) -> Palette {
        let accent = Style::default().fg(theme.accent);
        Palette {
            base: theme.base(),
            mention: theme.mention(),
            me: me.to_string(),
            link: accent,
            url: accent.add_modifier(Modifier::UNDERLINED),
            code: theme.base().bg(theme.code_bg),
            code_block: theme.base().bg(theme.code_bg),
            dim: theme.dimmed(),
            syntax: theme.syntax.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Block {
    /// Prose: `lead` before its first line, `hang` before the others.
    Text {
        lead: Vec<Seg>,
        hang: Vec<Seg>,
        segs: Vec<Seg>,
    },
    /// Highlighted code lines, each after `hang` and a gutter.
    Code {
        hang: Vec<Seg>,
        lines: Vec<Vec<Seg>>,
        gutter: Style,
        fill: Style,
    },
    Rule {
        hang: Vec<Seg>,
        style: Style,
    },
    Blank,
}

/// A parsed body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    blocks: Vec<Block>,
    /// Links as shown (the text on screen) and where they lead; only
    /// http, https and mailto targets.
    pub links: Vec<(String, String)>,
}

/// Whether `url` may become a terminal hyperlink: http, https or mailto.
pub fn linkable(url: &str) -> bool {
    ["http://", "https://", "mailto:"].iter().any(|s| {
        url.len() > s.len()
            && url
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
    })
}

struct ListLevel {
    next: Option<u64>,
    width: usize,
}

struct LinkState {
    url: String,
    first_seg: usize,
    text: String,
}

struct Builder<'p> {
    p: &'p Palette,
    doc: Doc,
    segs: Vec<Seg>,
    pending: String,
    italic: u32,
    bold: u32,
    strike: u32,
    link: Option<LinkState>,
    quote: usize,
    lists: Vec<ListLevel>,
    marker: Option<String>,
    need_blank: bool,
    code: Option<(Option<String>, String)>,
}

/// Parses `body` into blocks styled from `p`.
pub fn parse(body: &str, p: &Palette) -> Doc {
    let mut b = Builder {
        p,
        doc: Doc::default(),
        segs: Vec::new(),
        pending: String::new(),
        italic: 0,
        bold: 0,
        strike: 0,
        link: None,
        quote: 0,
        lists: Vec::new(),
        marker: None,
        need_blank: false,
        code: None,
    };
    for ev in Parser::new_ext(body, Options::ENABLE_STRIKETHROUGH) {
        b.event(ev);
    }
    b.flush_text();
    b.doc
}

impl Builder<'_> {
    fn event(&mut self, ev: Event) {
        match ev {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => match &mut self.code {
                Some((_, code)) => code.push_str(&t),
                None => self.pending.push_str(&t),
            },
            Event::Code(t) => {
                self.flush_pending();
                if let Some(l) = &mut self.link {
                    l.text.push_str(&t);
                }
                let style = self.style().patch(self.p.code);
                self.segs.push((clean(&t), style));
            }
            Event::Html(t) | Event::InlineHtml(t) | Event::InlineMath(t) => {
                self.pending.push_str(&t)
            }
            Event::DisplayMath(t) => self.pending.push_str(&t),
            Event::FootnoteReference(t) => self.pending.push_str(&format!("[^{t}]")),
            Event::SoftBreak | Event::HardBreak => self.pending.push('\n'),
            Event::Rule => {
                self.begin_block();
                let hang = self.prefixes().1;
                let style = self.p.dim;
                self.doc.blocks.push(Block::Rule { hang, style });
                self.need_blank = true;
            }
            Event::TaskListMarker(done) => {
                self.pending.push_str(if done { "[x] " } else { "[ ] " })
            }
        }
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Paragraph | Tag::Heading { .. } | Tag::HtmlBlock => {
                self.begin_block();
                if matches!(tag, Tag::Heading { .. }) {
                    self.bold += 1;
                }
            }
            Tag::BlockQuote(_) => {
                self.begin_block();
                self.quote += 1;
            }
            Tag::CodeBlock(kind) => {
                self.begin_block();
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().map(str::to_string)
                    }
                    CodeBlockKind::Indented => None,
                };
                self.code = Some((lang, String::new()));
            }
            Tag::List(start) => {
                if self.lists.is_empty() {
                    self.begin_block();
                } else {
                    self.flush_text();
                }
                self.lists.push(ListLevel {
                    next: start,
                    width: 0,
                });
            }
            Tag::Item => {
                self.flush_text();
                if let Some(level) = self.lists.last_mut() {
                    let marker = match &mut level.next {
                        Some(n) => {
                            let m = format!("{n}. ");
                            *n += 1;
                            m
                        }
                        None => BULLET.to_string(),
                    };
                    level.width = str_width(&marker);
                    self.marker = Some(marker);
                }
            }
            Tag::Emphasis => self.restyle(|b| b.italic += 1),
            Tag::Strong => self.restyle(|b| b.bold += 1),
            Tag::Strikethrough => self.restyle(|b| b.strike += 1),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                self.flush_pending();
                self.link = Some(LinkState {
                    url: clean(&dest_url),
                    first_seg: self.segs.len(),
                    text: String::new(),
                });
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph | TagEnd::HtmlBlock => self.end_block(),
            TagEnd::Heading(_) => {
                self.end_block();
                self.bold = self.bold.saturating_sub(1);
            }
            TagEnd::BlockQuote(_) => {
                self.end_block();
                self.quote = self.quote.saturating_sub(1);
            }
            TagEnd::CodeBlock => self.end_code(),
            TagEnd::List(_) => {
                self.flush_text();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.need_blank = true;
                }
            }
            TagEnd::Item => self.flush_text(),
            TagEnd::Emphasis => self.restyle(|b| b.italic = b.italic.saturating_sub(1)),
            TagEnd::Strong => self.restyle(|b| b.bold = b.bold.saturating_sub(1)),
            TagEnd::Strikethrough => self.restyle(|b| b.strike = b.strike.saturating_sub(1)),
            TagEnd::Link | TagEnd::Image => self.end_link(),
            _ => {}
        }
    }

    fn restyle(&mut self, f: impl FnOnce(&mut Self)) {
        self.flush_pending();
        f(self);
    }

    fn style(&self) -> Style {
        let mut s = if self.link.is_some() {
            self.p.base.patch(self.p.link)
        } else {
            self.p.base
        };
        if self.italic > 0 {
            s = s.add_modifier(Modifier::ITALIC);
        }
        if self.bold > 0 {
            s = s.add_modifier(Modifier::BOLD);
        }
        if self.strike > 0 {
            s = s.add_modifier(Modifier::CROSSED_OUT);
        }
        s
    }

    /// Moves merged text into styled segments: URLs and mentions get their
    /// own styles, except inside a link.
    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let text = clean(&std::mem::take(&mut self.pending));
        let style = self.style();
        if let Some(l) = &mut self.link {
            l.text.push_str(&text);
            self.segs.push((text, style));
            return;
        }
        for (piece, is_url) in split_urls(&text) {
            if is_url {
                self.segs.push((piece.to_string(), style.patch(self.p.url)));
                self.doc.links.push((piece.to_string(), piece.to_string()));
            } else {
                let mention = style.patch(self.p.mention);
                self.segs
                    .extend(mention_segments(piece, &self.p.me, style, mention));
            }
        }
    }

    /// A link's text stays; its URL follows in parentheses when different.
    fn end_link(&mut self) {
        self.flush_pending();
        let Some(l) = self.link.take() else {
            return;
        };
        let ok = linkable(&l.url);
        let bare = l.url.strip_prefix("mailto:").unwrap_or(&l.url);
        if ok && (l.text == l.url || l.text == bare) {
            for seg in &mut self.segs[l.first_seg..] {
                seg.1 = seg.1.patch(self.p.url);
            }
            self.doc.links.push((l.text, l.url));
            return;
        }
        if l.url.is_empty() || l.text == l.url {
            return;
        }
        let url_style = if ok {
            self.style().patch(self.p.url)
        } else {
            self.p.dim
        };
        self.segs.push((" (".into(), self.style()));
        self.segs.push((l.url.clone(), url_style));
        self.segs.push((")".into(), self.style()));
        if ok {
            self.doc.links.push((l.url.clone(), l.url));
        }
    }

    fn begin_block(&mut self) {
        self.flush_text();
        if self.need_blank && !self.doc.blocks.is_empty() {
            self.doc.blocks.push(Block::Blank);
        }
        self.need_blank = false;
    }

    fn end_block(&mut self) {
        self.flush_text();
        self.need_blank = true;
    }

    /// Quote bars and list indentation: (first line, other lines). Takes
    /// the pending list marker.
    fn prefixes(&mut self) -> (Vec<Seg>, Vec<Seg>) {
        let bar = (QUOTE_BAR.to_string(), self.p.dim);
        let mut lead = vec![bar.clone(); self.quote];
        let mut hang = vec![bar; self.quote];
        let n = self.lists.len();
        for (i, level) in self.lists.iter().enumerate() {
            if i + 1 == n
                && let Some(m) = self.marker.take()
            {
                hang.push((" ".repeat(str_width(&m)), self.p.base));
                lead.push((m, self.p.dim));
                continue;
            }
            let pad = (" ".repeat(level.width), self.p.base);
            lead.push(pad.clone());
            hang.push(pad);
        }
        (lead, hang)
    }

    fn flush_text(&mut self) {
        self.flush_pending();
        while let Some(last) = self.segs.last_mut() {
            let trimmed = last.0.trim_end_matches('\n').len();
            last.0.truncate(trimmed);
            if !last.0.is_empty() {
                break;
            }
            self.segs.pop();
        }
        if self.segs.is_empty() {
            return;
        }
        let segs = std::mem::take(&mut self.segs);
        let (lead, hang) = self.prefixes();
        self.doc.blocks.push(Block::Text { lead, hang, segs });
    }

    fn end_code(&mut self) {
        let Some((lang, code)) = self.code.take() else {
            return;
        };
        if self.marker.is_some() {
            let (lead, hang) = self.prefixes();
            let segs = Vec::new();
            self.doc.blocks.push(Block::Text { lead, hang, segs });
        }
        let lines = highlight::highlight(&code, lang.as_deref(), &self.p.syntax, self.p.code_block);
        let hang = self.prefixes().1;
        self.doc.blocks.push(Block::Code {
            hang,
            lines,
            gutter: self.p.dim,
            fill: self.p.code_block,
        });
        self.need_blank = true;
    }
}

/// Removes control characters except newlines; a tab becomes a space.
fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            '\n' => Some('\n'),
            c if unsafe_char(c) => None,
            c => Some(c),
        })
        .collect()
}

fn seg_width(segs: &[Seg]) -> usize {
    segs.iter().map(|s| str_width(&s.0)).sum()
}

fn seg_spans(segs: &[Seg]) -> Vec<Span<'static>> {
    segs.iter()
        .map(|(t, s)| Span::styled(t.clone(), *s))
        .collect()
}

/// `doc` as lines: the first holds `first` columns, the others `rest`.
/// `trailer` (the edited mark, a delivery mark) ends the last prose block,
/// or gets a line of its own after code. Never returns no lines.
pub fn lay_out(doc: &Doc, first: usize, rest: usize, trailer: &[Seg]) -> Vec<Vec<Span<'static>>> {
    let mut out: Vec<Vec<Span<'static>>> = Vec::new();
    let last = doc.blocks.len().checked_sub(1);
    let trailer_in_text = matches!(doc.blocks.last(), Some(Block::Text { .. }));
    for (i, block) in doc.blocks.iter().enumerate() {
        let width = if out.is_empty() { first } else { rest };
        match block {
            Block::Blank => out.push(Vec::new()),
            Block::Text { lead, hang, segs } => {
                let joined;
                let segs = if Some(i) == last && !trailer.is_empty() {
                    joined = [segs.as_slice(), trailer].concat();
                    &joined
                } else {
                    segs
                };
                let lines = wrap(
                    segs,
                    width.saturating_sub(seg_width(lead)),
                    rest.saturating_sub(seg_width(hang)),
                );
                for (n, chars) in lines.iter().enumerate() {
                    let mut spans = seg_spans(if n == 0 { lead } else { hang });
                    spans.extend(to_spans(chars));
                    out.push(spans);
                }
            }
            Block::Code {
                hang,
                lines,
                gutter,
                fill,
            } => {
                if out.is_empty() {
                    out.push(Vec::new());
                }
                code_lines(hang, lines, rest, *gutter, *fill, &mut out);
            }
            Block::Rule { hang, style } => {
                let n = width.saturating_sub(seg_width(hang));
                let mut spans = seg_spans(hang);
                spans.push(Span::styled("─".repeat(n.min(40)), *style));
                out.push(spans);
            }
        }
    }
    if !trailer_in_text && !trailer.is_empty() {
        let width = if out.is_empty() { first } else { rest };
        for chars in wrap(trailer, width, rest) {
            out.push(to_spans(&chars));
        }
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// Code lines cut to `width` (the rest continues on the next line behind
/// [`GUTTER_MORE`]), padded with `fill` so the block shows as one box.
fn code_lines(
    hang: &[Seg],
    lines: &[Vec<Seg>],
    width: usize,
    gutter: Style,
    fill: Style,
    out: &mut Vec<Vec<Span<'static>>>,
) {
    let avail = width.saturating_sub(seg_width(hang) + str_width(GUTTER));
    let empty = [Vec::new()];
    let lines = if lines.is_empty() { &empty[..] } else { lines };
    for line in lines {
        let mut pieces: Vec<(Vec<Span<'static>>, usize)> = vec![(Vec::new(), 0)];
        for (text, style) in line {
            let mut buf = String::new();
            for c in text.chars() {
                let cw = c.width().unwrap_or(0);
                if cw > avail {
                    continue;
                }
                let used = pieces.last().map_or(0, |p| p.1) + str_width(&buf);
                if used + cw > avail {
                    if let Some(p) = pieces.last_mut() {
                        p.1 += str_width(&buf);
                        p.0.push(Span::styled(std::mem::take(&mut buf), *style));
                    }
                    pieces.push((Vec::new(), 0));
                }
                buf.push(c);
            }
            if let Some(p) = pieces.last_mut()
                && !buf.is_empty()
            {
                p.1 += str_width(&buf);
                p.0.push(Span::styled(buf, *style));
            }
        }
        for (n, (spans, used)) in pieces.into_iter().enumerate() {
            let mut row = seg_spans(hang);
            let mark = if n == 0 { GUTTER } else { GUTTER_MORE };
            row.push(Span::styled(mark, gutter));
            row.extend(spans);
            if avail > used {
                row.push(Span::styled(" ".repeat(avail - used), fill));
            }
            out.push(row);
        }
    }
}

/// The first fenced code block of `body`, as written.
pub fn first_code_block(body: &str) -> Option<String> {
    let mut code: Option<String> = None;
    for ev in Parser::new_ext(body, Options::ENABLE_STRIKETHROUGH) {
        match (ev, &mut code) {
            (Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(_))), None) => {
                code = Some(String::new())
            }
            (Event::Text(t), Some(c)) => c.push_str(&t),
            (Event::End(TagEnd::CodeBlock), Some(_)) => break,
            _ => {}
        }
    }
    code
}

#[cfg(test)]
#[path = "markdown_tests.rs"]
mod tests;
