//! The header line: connection state (with "showing cached messages" when
//! not connected), the focused conversation, and me@server.

use super::wrap::{str_width, truncate};
use crate::client::view::ConnState;
use crate::proto::{ConvKind, PresenceStatus};
use crate::ui::app::{App, kind_marker};
use crate::ui::model::SyncNote;
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let base = theme.header();
    let (glyph, state, cached) = match &app.model.conn {
        ConnState::Connected if app.model.via_http => {
            ("●", strings::CONNECTED_HTTP.to_string(), false)
        }
        ConnState::Connected => ("●", strings::CONNECTED.to_string(), false),
        ConnState::Connecting => ("◌", strings::CONNECTING.to_string(), true),
        ConnState::Reconnecting { in_secs, .. } => ("⟳", strings::reconnecting(*in_secs), true),
        ConnState::Offline { reason } => ("○", strings::offline(reason), true),
    };
    let mut left = format!(" {glyph} {state}");
    if cached && !app.model.conversations.is_empty() {
        left.push_str(&format!(" · {}", strings::CACHED));
    }
    let mut sync_failed = false;
    if !cached {
        match app.model.sync {
            Some(SyncNote::Paging { conversations }) => {
                left.push_str(&format!(" · {}", strings::syncing(conversations)));
            }
            Some(SyncNote::Failed { retry_in_secs }) => {
                sync_failed = true;
                left.push_str(&format!(" · {}", strings::sync_failed(retry_in_secs)));
            }
            None => {}
        }
    }
    let conv = app
        .focused
        .as_deref()
        .and_then(|id| app.model.conversation(id))
        .map(|c| {
            let mut t = format!("{}{}", kind_marker(c.kind), c.title);
            if c.kind == ConvKind::Dm {
                if let Some(p) = app.model.presence.get(&c.title) {
                    t.push_str(&format!(" ({})", p.status.as_str()));
                }
            } else {
                t.push_str(&format!(" · {} members", c.member_count));
            }
            if c.encrypted {
                t.push_str(" · 🔒 secret");
            }
            if c.muted {
                t.push_str(" · muted");
            }
            t
        });
    let me = if app.model.me.is_empty() {
        app.model.server.clone()
    } else {
        format!("{}@{} ", app.model.me, app.model.server)
    };
    let w = usize::from(area.width);
    let state_style = match app.model.conn {
        ConnState::Connected if !sync_failed => base,
        _ => base.add_modifier(Modifier::BOLD),
    };
    let mut spans = vec![Span::styled(truncate(&left, w), state_style)];
    let mut used = str_width(&left).min(w);
    if let Some(t) = conv {
        let t = format!("  │ {t}");
        if used + str_width(&t) <= w {
            used += str_width(&t);
            spans.push(Span::styled(t, base.add_modifier(Modifier::BOLD)));
        }
    }
    if used + str_width(&me) + 2 <= w {
        let gap = w - used - str_width(&me);
        spans.push(Span::styled(" ".repeat(gap), base));
        spans.push(Span::styled(me, base));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(base), area);
}

/// The presence dot for a DM peer.
pub fn presence_dot(
    status: Option<PresenceStatus>,
    theme: &crate::ui::theme::Theme,
) -> Span<'static> {
    match status {
        Some(PresenceStatus::Online) => Span::styled("●", Style::default().fg(theme.ok)),
        Some(PresenceStatus::Away) => Span::styled("◐", Style::default().fg(theme.warn)),
        _ => Span::styled("○", theme.dimmed()),
    }
}
