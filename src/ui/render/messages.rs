//! The message view: rows laid out into styled lines for a given width
//! (day separators, sender colours, wrapping, edits, deletions, reactions,
//! reply quotes, delivery marks, receipts, gaps, the selection, the "new
//! messages" line, shared files with their caption and inline image).
//! Bodies are markdown ([`super::markdown`]) unless shown
//! raw. The App uses the same layout to scroll, so this module is pure and
//! width-driven.

use super::markdown::{Palette, mention_segments};
use super::receipts::Receipts;
use super::wrap::{Seg, pad, str_width, to_spans, truncate, wrap};
use crate::client::view::{MessageRow, MessageView, SendState};
use crate::ui::app::App;
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Width of the `HH:MM ` column; continuation lines are indented by it.
const INDENT: usize = 6;

#[derive(Debug, Default)]
pub struct Laid {
    pub lines: Vec<Line<'static>>,
    /// For each line, the index of the row it belongs to.
    pub row_of_line: Vec<Option<usize>>,
    /// Where URLs are shown, for terminal hyperlinks.
    pub links: Vec<LinkSpan>,
    /// Blank lines kept for inline images.
    pub images: Vec<ImageSpot>,
}

/// Lines `line..line + rows` hold the image of `digest`, `cols` wide, from
/// column [`INDENT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpot {
    pub line: usize,
    pub rows: u16,
    pub cols: u16,
    pub digest: String,
}

/// A URL's cells on one laid-out line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpan {
    pub line: usize,
    pub col: usize,
    pub width: usize,
    pub url: String,
}

impl Laid {
    fn push(&mut self, line: Line<'static>, row: Option<usize>) {
        self.lines.push(line);
        self.row_of_line.push(row);
    }
}

/// Lays out the focused conversation at `width` columns.
pub fn lay_out(app: &App, width: u16) -> Laid {
    let w = usize::from(width);
    let mut laid = Laid::default();
    let Some(conv) = app.focused.as_deref() else {
        return laid;
    };
    if w == 0 {
        return laid;
    }
    let rows = app.model.rows(conv);
    let receipts = Receipts::compute(app, conv, rows);
    let dim = app.theme.dimmed();
    if app.model.loading_older {
        laid.push(Line::styled(strings::LOADING_OLDER, dim), None);
    } else if rows.first().and_then(crate::ui::app::row_seq) == Some(1) {
        let pad = w.saturating_sub(str_width(strings::BEGINNING)) / 2;
        let text = format!("{}{}", " ".repeat(pad), strings::BEGINNING);
        laid.push(Line::styled(truncate(&text, w), dim), None);
    }
    let selected = app.selected_index();
    let palette = Palette::new(&app.theme, &app.model.me);
    let new_at = app.new_messages_index();
    let mut last_day = None;
    for (i, row) in rows.iter().enumerate() {
        let ts = match row {
            MessageRow::Message(m) => Some(m.ts),
            MessageRow::System { ts, .. } => Some(*ts),
            MessageRow::Missing { .. } => None,
        };
        if let Some(ts) = ts {
            let day = app.tz.wall(ts).day_number;
            if last_day != Some(day) {
                laid.push(day_separator(&app.tz.day_label(ts), w, dim), None);
                last_day = Some(day);
            }
        }
        if new_at == Some(i) {
            let style = app.theme.new_messages();
            laid.push(day_separator(strings::NEW_MESSAGES, w, style), None);
        }
        let start = laid.lines.len();
        match row {
            MessageRow::Message(m) => message(app, m, &receipts, &palette, (w, i), &mut laid),
            MessageRow::System {
                ts, sender, change, ..
            } => {
                let text = crate::client::text::system_line(sender, change);
                let segs = vec![(format!("· {text}"), dim.add_modifier(Modifier::ITALIC))];
                let prefix = vec![Span::styled(format!("{} ", app.tz.hhmm(*ts)), dim)];
                body_lines(prefix, &segs, w, i, &mut laid);
            }
            MessageRow::Missing { .. } => {
                let style = Style::default().fg(app.theme.warn);
                let text = format!("⋯ {}", strings::MISSING);
                laid.push(Line::styled(truncate(&text, w), style), Some(i));
            }
        }
        if selected == Some(i) {
            let sel = app.theme.selected();
            for line in &mut laid.lines[start..] {
                pad(line, w, sel);
                for span in &mut line.spans {
                    span.style = span.style.patch(sel);
                }
            }
        }
        if let Some(users) = receipts.seen_by.get(&i) {
            let names: Vec<&str> = users.iter().map(String::as_str).collect();
            let segs = vec![(strings::seen_by(&names), dim.add_modifier(Modifier::ITALIC))];
            body_lines(indent(), &segs, w, i, &mut laid);
        }
    }
    laid
}

fn indent() -> Vec<Span<'static>> {
    vec![Span::raw(" ".repeat(INDENT))]
}

fn day_separator(label: &str, w: usize, style: Style) -> Line<'static> {
    let label = format!(" {label} ");
    let lw = str_width(&label);
    if lw + 4 > w {
        return Line::styled(truncate(label.trim(), w), style);
    }
    let left = (w - lw) / 2;
    let right = w - lw - left;
    Line::styled(
        format!("{}{label}{}", "─".repeat(left), "─".repeat(right)),
        style,
    )
}

/// Wraps `segs` after `prefix` on the first line; continuation lines are
/// indented by [`INDENT`].
fn body_lines(prefix: Vec<Span<'static>>, segs: &[Seg], w: usize, row: usize, laid: &mut Laid) {
    let pw: usize = prefix.iter().map(Span::width).sum();
    let wrapped = wrap(segs, w.saturating_sub(pw), w.saturating_sub(INDENT));
    for (n, chars) in wrapped.iter().enumerate() {
        let mut spans = if n == 0 { prefix.clone() } else { indent() };
        spans.extend(to_spans(chars));
        laid.push(Line::from(spans), Some(row));
    }
}

/// Lays out a body as markdown after `head` (from the App's cache when the
/// same body was laid out at this width before) and records where its links
/// are.
fn markdown_lines(
    app: &App,
    head: Vec<Span<'static>>,
    (body, palette): (&str, &Palette),
    trailer: &[Seg],
    (w, row): (usize, usize),
    laid: &mut Laid,
) {
    let hw: usize = head.iter().map(Span::width).sum();
    let widths = (w.saturating_sub(hw), w.saturating_sub(INDENT));
    let (doc, lines) = app.markup.cache.laid(body, palette, widths, trailer);
    let start = laid.lines.len();
    let mut head = Some(head);
    for spans in lines.iter() {
        let mut line = head.take().unwrap_or_else(indent);
        line.extend(spans.iter().cloned());
        laid.push(Line::from(line), Some(row));
    }
    if !doc.links.is_empty() {
        find_links(&laid.lines[start..], start, &doc.links, &mut laid.links);
    }
}

/// Finds the URLs of `known` (as shown) among the underlined runs of
/// `lines`; a URL broken over lines is joined back when the pieces spell it.
fn find_links(
    lines: &[Line<'static>],
    offset: usize,
    known: &[(String, String)],
    out: &mut Vec<LinkSpan>,
) {
    let mut pieces: Vec<(LinkSpan, String)> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let mut col = 0;
        let mut open: Option<(LinkSpan, String)> = None;
        for span in &line.spans {
            let sw = span.width();
            if span.style.add_modifier.contains(Modifier::UNDERLINED) {
                let (piece, text) = open.get_or_insert_with(|| {
                    let at = LinkSpan {
                        line: offset + n,
                        col,
                        width: 0,
                        url: String::new(),
                    };
                    (at, String::new())
                });
                piece.width += sw;
                text.push_str(&span.content);
            } else if let Some(p) = open.take() {
                pieces.push(p);
            }
            col += sw;
        }
        pieces.extend(open);
    }
    let shown = |text: &str| known.iter().find(|(s, _)| s == text).map(|(_, u)| u);
    let mut i = 0;
    while i < pieces.len() {
        let mut text = pieces[i].1.clone();
        let mut j = i + 1;
        while shown(&text).is_none()
            && j < pieces.len()
            && pieces[j].0.line == pieces[j - 1].0.line + 1
            && known.iter().any(|(s, _)| s.starts_with(&text))
        {
            text.push_str(&pieces[j].1);
            j += 1;
        }
        match shown(&text) {
            Some(url) => {
                for (piece, _) in &pieces[i..j] {
                    out.push(LinkSpan {
                        url: url.clone(),
                        ..piece.clone()
                    });
                }
                i = j;
            }
            None => i += 1,
        }
    }
}

fn message(
    app: &App,
    m: &MessageView,
    receipts: &Receipts,
    palette: &Palette,
    (w, row): (usize, usize),
    laid: &mut Laid,
) {
    let theme = &app.theme;
    let dim = theme.dimmed();
    let time_style = if m.mentions_me { theme.mention() } else { dim };
    let sender = truncate(&m.sender, (w / 3).max(4));
    let mut prefix = vec![
        Span::styled(app.tz.hhmm(m.ts), time_style),
        Span::raw(" "),
        Span::styled(sender, theme.user(&m.sender)),
        Span::raw(" "),
    ];
    if m.bot {
        prefix.push(Span::styled(
            strings::BOT_BADGE,
            dim.add_modifier(Modifier::REVERSED),
        ));
        prefix.push(Span::raw(" "));
    }
    let mut trailer: Vec<Seg> = Vec::new();
    if m.edited && !m.deleted {
        trailer.push((format!(" {}", strings::EDITED), dim));
    }
    if let Some((mark, style)) = receipts.mark(m, theme) {
        trailer.push((format!(" {mark}"), style));
    }
    let raw = m.deleted || app.shows_raw(m.seq);
    let mut segs: Vec<Seg> = if m.deleted {
        let said = if m.moderated {
            strings::REMOVED_BY_MODERATOR
        } else {
            strings::DELETED
        };
        vec![(said.to_string(), dim.add_modifier(Modifier::ITALIC))]
    } else if raw {
        mention_segments(&m.body, &app.model.me, theme.base(), theme.mention())
    } else {
        Vec::new()
    };
    segs.extend(trailer.iter().cloned());
    let head = match &m.reply_to {
        Some(q) => {
            let pw: usize = prefix.iter().map(Span::width).sum();
            let quote = strings::reply_quote(&q.sender, &q.excerpt);
            let mut first = prefix;
            first.push(Span::styled(
                truncate(&quote, w.saturating_sub(pw)),
                dim.add_modifier(Modifier::ITALIC),
            ));
            laid.push(Line::from(first), Some(row));
            indent()
        }
        None => prefix,
    };
    if let Some(file) = &m.file {
        file_line(app, head, file, &trailer, (w, row), laid);
        if raw && !m.body.is_empty() {
            let segs = mention_segments(&m.body, &app.model.me, theme.base(), theme.mention());
            body_lines(indent(), &segs, w, row, laid);
        } else if !m.body.is_empty() {
            markdown_lines(app, indent(), (&m.body, palette), &[], (w, row), laid);
        }
        image_lines(app, file, (w, row), laid);
    } else if raw {
        body_lines(head, &segs, w, row, laid);
    } else {
        markdown_lines(app, head, (&m.body, palette), &trailer, (w, row), laid);
    }
    if !m.reactions.is_empty() && !m.deleted {
        let me = app.model.me.as_str();
        let mut segs: Vec<Seg> = Vec::new();
        for (n, r) in m.reactions.iter().enumerate() {
            let mine = r.users.iter().any(|u| u == me);
            let style = if mine {
                Style::default().fg(theme.accent)
            } else {
                theme.base()
            };
            let sep = if n == 0 { "" } else { "  " };
            segs.push((format!("{sep}{} {}", r.emoji, r.users.len()), style));
        }
        body_lines(indent(), &segs, w, row, laid);
    }
    if let Some(SendState::Failed(reason)) = &m.send_state {
        let segs = vec![(strings::failed(reason), Style::default().fg(theme.error))];
        body_lines(indent(), &segs, w, row, laid);
    }
}

/// A shared file: `📎 name  47 KiB · text/plain` after `head`.
fn file_line(
    app: &App,
    head: Vec<Span<'static>>,
    file: &crate::proto::FileInfo,
    trailer: &[Seg],
    (w, row): (usize, usize),
    laid: &mut Laid,
) {
    let theme = &app.theme;
    let clean = crate::client::text::clean;
    let mut segs: Vec<Seg> = vec![
        ("📎 ".to_string(), theme.base()),
        (clean(&file.name), theme.base().add_modifier(Modifier::BOLD)),
        (
            format!(
                "  {} · {}",
                crate::client::attach::human_size(file.size),
                clean(&file.media_type)
            ),
            theme.dimmed(),
        ),
    ];
    segs.extend(trailer.iter().cloned());
    body_lines(head, &segs, w, row, laid);
}

/// The blank lines an inline image is drawn over, when it is decoded.
fn image_lines(
    app: &App,
    file: &crate::proto::FileInfo,
    (w, row): (usize, usize),
    laid: &mut Laid,
) {
    let Some(size) = app.images.protocol(&file.digest).map(|p| p.size()) else {
        return;
    };
    if size.width == 0 || w < INDENT + 2 {
        return;
    }
    laid.images.push(ImageSpot {
        line: laid.lines.len(),
        rows: size.height,
        cols: size.width.min((w - INDENT) as u16),
        digest: file.digest.clone(),
    });
    for _ in 0..size.height {
        laid.push(Line::default(), Some(row));
    }
}

/// The layout of `area` and the slice of it on screen: lines
/// `start..end`, drawn from `top` rows down. `None` while a placeholder
/// shows instead.
fn visible(app: &App, area: Rect) -> Option<(Laid, usize, usize, u16)> {
    let shows_rows = app
        .focused
        .as_deref()
        .is_some_and(|c| app.model.messages.contains_key(c) && !app.model.rows(c).is_empty());
    if !shows_rows {
        return None;
    }
    let laid = lay_out(app, area.width);
    let h = usize::from(area.height);
    let total = laid.lines.len();
    let scroll = app.scroll.min(total.saturating_sub(h));
    let end = total - scroll;
    let start = end.saturating_sub(h);
    let top = (h - (end - start)) as u16;
    Some((laid, start, end, top))
}

/// Draws the message view, bottom-anchored and scrolled by `app.scroll`.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let dim = app.theme.dimmed();
    let placeholder = match app.focused.as_deref() {
        None => Some(strings::NO_CONVERSATIONS),
        Some(c) if !app.model.messages.contains_key(c) => Some(strings::NOT_LOADED),
        Some(c) if app.model.rows(c).is_empty() => Some(strings::NO_MESSAGES),
        _ => None,
    };
    let shown = placeholder.is_none().then(|| visible(app, area)).flatten();
    let Some((laid, start, end, top)) = shown else {
        let p = Paragraph::new(placeholder.unwrap_or_default())
            .style(dim)
            .wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(p, area);
        return;
    };
    let lines: Vec<Line> = laid.lines[start..end].to_vec();
    let mut target = area;
    target.y += top;
    target.height -= top;
    frame.render_widget(Paragraph::new(lines).style(app.theme.base()), target);
    for (rect, digest) in spots_on_screen(&laid, (start, end, top), area) {
        if let Some(p) = app.images.protocol(&digest) {
            frame.render_widget(ratatui_image::Image::new(p), rect);
        }
    }
}

/// The images wholly on screen and where.
fn spots_on_screen(
    laid: &Laid,
    (start, end, top): (usize, usize, u16),
    area: Rect,
) -> Vec<(Rect, String)> {
    laid.images
        .iter()
        .filter(|s| s.line >= start && s.line + usize::from(s.rows) <= end)
        .filter_map(|s| {
            let y = area.y + top + u16::try_from(s.line - start).ok()?;
            let x = area.x + INDENT as u16;
            let cols = s.cols.min(area.right().saturating_sub(x));
            (cols > 0).then(|| (Rect::new(x, y, cols, s.rows), s.digest.clone()))
        })
        .collect()
}

/// The inline images on screen in `area`, with their digests.
pub fn image_spots(app: &App, area: Rect) -> Vec<(Rect, String)> {
    match visible(app, area) {
        Some((laid, start, end, top)) => spots_on_screen(&laid, (start, end, top), area),
        None => Vec::new(),
    }
}

/// The screen cells of the URLs on screen in `area`, with their targets.
pub fn links(app: &App, area: Rect) -> Vec<(Rect, String)> {
    let Some((laid, start, end, top)) = visible(app, area) else {
        return Vec::new();
    };
    laid.links
        .into_iter()
        .filter(|l| (start..end).contains(&l.line))
        .filter_map(|l| {
            let y = area.y + top + u16::try_from(l.line - start).ok()?;
            let x = area.x + u16::try_from(l.col).ok()?;
            let width = u16::try_from(l.width)
                .ok()?
                .min(area.right().saturating_sub(x));
            (width > 0).then(|| (Rect::new(x, y, width, 1), l.url))
        })
        .collect()
}
