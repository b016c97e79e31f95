//! The message view: rows laid out into styled lines for a given width
//! (day separators, sender colours, wrapping, edits, deletions, reactions,
//! reply quotes, delivery marks, receipts, gaps, the selection, the "new
//! messages" line). The App
//! uses the same layout to scroll, so this module is pure and width-driven.

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
            MessageRow::Message(m) => message(app, m, &receipts, w, i, &mut laid),
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

fn message(app: &App, m: &MessageView, receipts: &Receipts, w: usize, row: usize, laid: &mut Laid) {
    let theme = &app.theme;
    let dim = theme.dimmed();
    let time_style = if m.mentions_me { theme.mention() } else { dim };
    let sender = truncate(&m.sender, (w / 3).max(4));
    let prefix = vec![
        Span::styled(app.tz.hhmm(m.ts), time_style),
        Span::raw(" "),
        Span::styled(sender, theme.user(&m.sender)),
        Span::raw(" "),
    ];
    let mut segs: Vec<Seg> = if m.deleted {
        vec![(
            strings::DELETED.to_string(),
            dim.add_modifier(Modifier::ITALIC),
        )]
    } else {
        mention_segments(&m.body, &app.model.me, theme.base(), theme.mention())
    };
    if m.edited && !m.deleted {
        segs.push((format!(" {}", strings::EDITED), dim));
    }
    if let Some((mark, style)) = receipts.mark(m, theme) {
        segs.push((format!(" {mark}"), style));
    }
    match &m.reply_to {
        Some(q) => {
            let pw: usize = prefix.iter().map(Span::width).sum();
            let quote = strings::reply_quote(&q.sender, &q.excerpt);
            let mut first = prefix;
            first.push(Span::styled(
                truncate(&quote, w.saturating_sub(pw)),
                dim.add_modifier(Modifier::ITALIC),
            ));
            laid.push(Line::from(first), Some(row));
            body_lines(indent(), &segs, w, row, laid);
        }
        None => body_lines(prefix, &segs, w, row, laid),
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

/// Splits `body` so every `@me` (case-insensitive, whole name) is styled as
/// a mention.
fn mention_segments(body: &str, me: &str, base: Style, mention: Style) -> Vec<Seg> {
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
    if let Some(text) = placeholder {
        let p = Paragraph::new(text)
            .style(dim)
            .wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(p, area);
        return;
    }
    let laid = lay_out(app, area.width);
    let h = usize::from(area.height);
    let total = laid.lines.len();
    let scroll = app.scroll.min(total.saturating_sub(h));
    let end = total - scroll;
    let start = end.saturating_sub(h);
    let lines: Vec<Line> = laid.lines[start..end].to_vec();
    let pad_top = h - lines.len();
    let mut target = area;
    target.y += pad_top as u16;
    target.height -= pad_top as u16;
    frame.render_widget(Paragraph::new(lines).style(app.theme.base()), target);
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
