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

/// Clears `area`, draws a bordered box titled `title`; returns its inside.
pub(super) fn popup(app: &App, frame: &mut Frame, area: Rect, title: &str) -> Rect {
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

/// The help's two columns: keys (then the secret-conversation commands,
/// which evens the columns out), and the other commands.
fn help_tables(app: &App) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
    let keys = [strings::HELP_KEYS, strings::HELP_UNREAD_KEYS].concat();
    let cmds = [strings::HELP_COMMANDS, strings::HELP_UNREAD_COMMANDS].concat();
    let mut left = table(app, "Keys", &keys, 18);
    left.push(Line::raw(""));
    left.extend(table(
        app,
        strings::HELP_SECRET_HEADING,
        strings::HELP_SECRET_COMMANDS,
        18,
    ));
    (left, table(app, "Commands", &cmds, 18))
}

/// Where the help goes on a `full` screen, its lines (one or two columns)
/// and how far it can scroll.
struct HelpLayout {
    area: Rect,
    columns: Vec<Vec<Line<'static>>>,
    max_scroll: usize,
}

fn help_layout(app: &App, full: Rect) -> HelpLayout {
    let (keys, cmds) = help_tables(app);
    let two_columns = full.width >= 100;
    let (w, content, columns) = if two_columns {
        (
            full.width.saturating_sub(4).min(140),
            keys.len().max(cmds.len()),
            vec![keys, cmds],
        )
    } else {
        let mut lines = keys;
        lines.push(Line::raw(""));
        lines.extend(cmds);
        (
            full.width.saturating_sub(2).min(76),
            lines.len(),
            vec![lines],
        )
    };
    let area = centered(full, w, content as u16 + 2);
    let inner = usize::from(area.height.saturating_sub(2));
    HelpLayout {
        area,
        columns,
        max_scroll: content.saturating_sub(inner),
    }
}

/// How far the help can scroll on a `full` screen.
pub fn help_max_scroll(app: &App, full: Rect) -> usize {
    help_layout(app, full).max_scroll
}

pub fn render_help(app: &App, frame: &mut Frame, full: Rect) {
    let HelpLayout {
        area,
        columns,
        max_scroll,
    } = help_layout(app, full);
    let scroll = app.help_scroll.min(max_scroll);
    let title = if max_scroll > 0 {
        strings::HELP_TITLE_SCROLL
    } else {
        strings::HELP_TITLE
    };
    let inner = popup(app, frame, area, title);
    let offset = (u16::try_from(scroll).unwrap_or(u16::MAX), 0);
    let n = columns.len() as u32;
    let areas = Layout::horizontal((0..n).map(|_| Constraint::Ratio(1, n))).split(inner);
    for (lines, at) in columns.into_iter().zip(areas.iter()) {
        frame.render_widget(Paragraph::new(lines).scroll(offset), *at);
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
