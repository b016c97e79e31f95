//! Popups drawn over the main screen: the help overlay (every key and
//! command) and the quick switcher.

use super::layout::centered;
use super::wrap::truncate;
use crate::ui::app::App;
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

fn popup(app: &App, frame: &mut Frame, area: Rect, title: &str) -> Rect {
    frame.render_widget(Clear, area);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(app.theme.accent))
        .title(truncate(title, usize::from(area.width.saturating_sub(2))))
        .style(app.theme.base());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

fn table(app: &App, heading: &str, rows: &[(&str, &str)], key_w: usize) -> Vec<Line<'static>> {
    let accent = Style::default()
        .fg(app.theme.accent)
        .add_modifier(Modifier::BOLD);
    let mut lines = vec![Line::styled(heading.to_string(), accent)];
    for (key, what) in rows {
        lines.push(Line::from(vec![
            Span::styled(
                format!(" {key:<key_w$} "),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::styled(what.to_string(), app.theme.base()),
        ]));
    }
    lines
}

pub fn render_help(app: &App, frame: &mut Frame, full: Rect) {
    let keys = [strings::HELP_KEYS, strings::HELP_UNREAD_KEYS].concat();
    let cmds = [strings::HELP_COMMANDS, strings::HELP_UNREAD_COMMANDS].concat();
    let keys = table(app, "Keys", &keys, 18);
    let cmds = table(app, "Commands", &cmds, 18);
    let two_columns = full.width >= 100;
    let (w, h) = if two_columns {
        (
            full.width.saturating_sub(4).min(140),
            keys.len().max(cmds.len()) as u16 + 2,
        )
    } else {
        (
            full.width.saturating_sub(2).min(76),
            (keys.len() + cmds.len() + 1) as u16 + 2,
        )
    };
    let area = centered(full, w, h);
    let inner = popup(app, frame, area, strings::HELP_TITLE);
    if two_columns {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(inner);
        frame.render_widget(Paragraph::new(keys), left);
        frame.render_widget(Paragraph::new(cmds), right);
    } else {
        let mut lines = keys;
        lines.push(Line::raw(""));
        lines.extend(cmds);
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

pub fn render_switcher(app: &App, frame: &mut Frame, full: Rect) {
    let items = app.switcher_items();
    let w = full.width.saturating_sub(4).min(56);
    let h = (items.len() as u16 + 3).clamp(4, 14);
    let mut area = centered(full, w, h);
    area.y = full.y + (full.height.saturating_sub(h) / 3);
    let inner = popup(app, frame, area, strings::SWITCHER_TITLE);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let iw = usize::from(inner.width);
    let query = format!("› {}", app.switcher.query);
    let mut lines = vec![Line::styled(
        truncate(&query, iw),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    let room = usize::from(inner.height).saturating_sub(1);
    let sel = app.switcher.selected.min(items.len().saturating_sub(1));
    let first = (sel + 1).saturating_sub(room);
    if items.is_empty() {
        lines.push(Line::styled(strings::SWITCHER_EMPTY, app.theme.dimmed()));
    }
    for (i, item) in items.iter().enumerate().skip(first).take(room) {
        let unread = if item.unread > 0 {
            format!(" {}", item.unread)
        } else {
            String::new()
        };
        let text = truncate(&format!(" {} {}{unread}", item.marker, item.label), iw);
        let mut line = Line::styled(text, app.theme.base());
        if i == sel {
            line = line.style(app.theme.selected().add_modifier(Modifier::BOLD));
            super::wrap::pad(&mut line, iw, app.theme.selected());
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inner);
    let x = inner.x + (super::wrap::str_width(&query) as u16).min(inner.width.saturating_sub(1));
    frame.set_cursor_position(Position::new(x, inner.y));
}
