//! The sessions overlay: one row per device session of this account (the
//! device label, when and from where it was last used, its id), the one in
//! use marked. Labels and addresses pass through `clean`: another device
//! chose them.

use super::layout::centered;
use super::wrap::{pad, str_width, truncate};
use crate::client::accounts::ago;
use crate::client::text::clean;
use crate::proto::SessionInfo;
use crate::ui::app::App;
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// Column widths: device, last used, address.
const DEVICE_W: usize = 14;
const SEEN_W: usize = 11;
const ADDRESS_W: usize = 15;

/// One session as a row of text.
pub fn row(s: &SessionInfo, now: i64) -> String {
    let cell = |text: &str, w: usize| {
        let t = truncate(text, w);
        let fill = w.saturating_sub(str_width(&t));
        format!("{t}{}", " ".repeat(fill))
    };
    let address = s.last_address.as_deref().map(clean);
    let mark = if s.current {
        format!("  ● {}", strings::SESSIONS_CURRENT)
    } else {
        String::new()
    };
    format!(
        " {} {} {} {}{mark}",
        cell(&clean(&s.device), DEVICE_W),
        cell(&ago(now, s.last_seen), SEEN_W),
        cell(address.as_deref().unwrap_or("—"), ADDRESS_W),
        clean(&s.id),
    )
}

pub fn render(app: &App, frame: &mut Frame, full: Rect) {
    let theme = &app.theme;
    let sessions = app.model.sessions.as_deref();
    let n = sessions.map_or(1, |l| l.len().max(1));
    let w = full.width.saturating_sub(4).min(80);
    let h = (n as u16 + 4).min(full.height.saturating_sub(2)).max(5);
    let area = centered(full, w, h);
    frame.render_widget(Clear, area);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(theme.accent))
        .title(truncate(
            strings::SESSIONS_TITLE,
            usize::from(area.width.saturating_sub(2)),
        ))
        .style(theme.base());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let iw = usize::from(inner.width);
    let mut lines: Vec<Line<'static>> = Vec::new();
    match sessions {
        None => lines.push(Line::styled(strings::SESSIONS_LOADING, theme.dimmed())),
        Some(list) => {
            // Rows between the hints line and the bottom: keep the
            // selection in view.
            let room = usize::from(inner.height).saturating_sub(2).max(1);
            let sel = app.sessions_selected.min(list.len().saturating_sub(1));
            let first = (sel + 1).saturating_sub(room);
            for (i, s) in list.iter().enumerate().skip(first).take(room) {
                let text = truncate(&row(s, app.wall), iw);
                let mut line = Line::styled(text, theme.base());
                if i == sel {
                    line = line.style(theme.selected().add_modifier(Modifier::BOLD));
                    pad(&mut line, iw, theme.selected());
                }
                lines.push(line);
            }
        }
    }
    let used = lines.len();
    for _ in used..usize::from(inner.height).saturating_sub(1) {
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled(
        truncate(strings::SESSIONS_HINTS, iw),
        theme.dimmed(),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}
