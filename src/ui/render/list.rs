//! The conversation list: kind marker, name, presence dot for DMs, mention
//! badge and unread count; unread rows bold, muted rows dimmed, the focused
//! row highlighted. Scrolls to keep the focused row visible. With the
//! unread-only filter, a title line says so and only the conversations
//! with unread messages (and the focused one) are listed.

use super::header::presence_dot;
use super::wrap::{str_width, truncate};
use crate::proto::ConvKind;
use crate::ui::app::{App, kind_marker};
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let block = Block::new()
        .borders(Borders::RIGHT)
        .border_style(Style::default().fg(theme.border));
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width == 0 || inner.height == 0 {
        return;
    }
    if app.unread_only {
        let title = truncate(
            &format!(" {}", strings::UNREAD_ONLY_TITLE),
            usize::from(inner.width),
        );
        let style = Style::default()
            .fg(theme.accent)
            .add_modifier(Modifier::BOLD);
        frame.render_widget(Paragraph::new(Line::styled(title, style)), inner);
        inner.y += 1;
        inner.height -= 1;
    }
    let convs = app.listed_conversations();
    if app.model.conversations.is_empty() {
        let p = Paragraph::new(strings::NO_CONVERSATIONS)
            .style(theme.dimmed())
            .wrap(Wrap { trim: true });
        frame.render_widget(p, inner);
        return;
    }
    let w = usize::from(inner.width);
    let h = usize::from(inner.height);
    let focused = app
        .focused
        .as_deref()
        .and_then(|f| convs.iter().position(|c| c.id == f));
    let first = focused.map_or(0, |f| (f + 1).saturating_sub(h));
    let mut lines = Vec::new();
    for (i, c) in convs.iter().enumerate().skip(first).take(h) {
        let mut style = theme.base();
        if c.unread > 0 {
            style = style.fg(theme.unread).add_modifier(Modifier::BOLD);
        }
        if c.muted {
            style = theme.dimmed();
        }
        let selected = focused == Some(i);
        let mut right: Vec<Span> = Vec::new();
        if c.mentions > 0 {
            right.push(Span::styled(format!("@{}", c.mentions), theme.mention()));
            right.push(Span::raw(" "));
        }
        if c.unread > 0 {
            right.push(Span::styled(format!("{}", c.unread), style));
        }
        right.push(Span::raw(" "));
        let right_w: usize = right.iter().map(Span::width).sum();
        let mut left = vec![Span::styled(
            format!(" {}", kind_marker(c.kind)),
            Style::default().fg(theme.dim),
        )];
        let dot = (c.kind == ConvKind::Dm)
            .then(|| presence_dot(app.model.presence.get(&c.title).map(|p| p.status), theme));
        let dot_w = if dot.is_some() { 2 } else { 0 };
        // A secret conversation carries a lock after its name.
        let lock_w = if c.encrypted { 3 } else { 0 };
        let dot_w = dot_w + lock_w;
        let name_room = w.saturating_sub(2 + right_w + dot_w + 1);
        let name = truncate(&c.title, name_room);
        let name_w = str_width(&name);
        left.push(Span::styled(name, style));
        if c.encrypted {
            left.push(Span::styled(" 🔒", Style::default().fg(theme.dim)));
        }
        if let Some(dot) = dot {
            left.push(Span::raw(" "));
            left.push(dot);
        }
        let gap = w.saturating_sub(2 + name_w + dot_w + right_w);
        left.push(Span::raw(" ".repeat(gap)));
        left.extend(right);
        let mut line = Line::from(left);
        if selected {
            let sel = theme.selected();
            for s in &mut line.spans {
                s.style = s.style.patch(sel);
            }
            if let Some(marker) = line.spans.first_mut() {
                marker.style = marker.style.fg(theme.accent).add_modifier(Modifier::BOLD);
                marker.content = format!("▌{}", kind_marker(c.kind)).into();
            }
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
