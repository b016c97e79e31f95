//! The bottom of the right pane and the screen: typing line, composer (with
//! its cursor) and the status line.

use super::layout::COMPOSER_MAX_ROWS;
use super::wrap::{str_width, truncate};
use crate::ui::app::{App, Mode};
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use unicode_width::UnicodeWidthChar;

/// The composer text broken into display rows of at most `width` columns
/// (hard breaks at `\n`, then by character), each with its starting byte.
pub fn composer_rows(text: &str, width: usize) -> Vec<(usize, String)> {
    let width = width.max(1);
    let mut rows = vec![(0usize, String::new())];
    let mut used = 0;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            rows.push((i + 1, String::new()));
            used = 0;
            continue;
        }
        let cw = c.width().unwrap_or(0);
        if used + cw > width && used > 0 {
            rows.push((i, String::new()));
            used = 0;
        }
        if let Some((_, row)) = rows.last_mut() {
            row.push(c);
        }
        used += cw;
    }
    rows
}

/// Row and column of byte offset `cursor` in `composer_rows`.
fn cursor_cell(text: &str, rows: &[(usize, String)], cursor: usize) -> (usize, usize) {
    let row = rows
        .iter()
        .rposition(|(start, _)| *start <= cursor)
        .unwrap_or(0);
    let start = rows[row].0;
    let col = str_width(text.get(start..cursor).unwrap_or(""));
    (row, col)
}

pub fn render_typing(app: &App, frame: &mut Frame, area: Rect) {
    let Some(conv) = app.focused.as_deref() else {
        return;
    };
    let typists = app.model.typists(conv, app.now);
    if typists.is_empty() {
        return;
    }
    let text = truncate(&strings::typing(&typists), usize::from(area.width));
    let style = app.theme.dimmed().add_modifier(Modifier::ITALIC);
    frame.render_widget(Paragraph::new(text).style(style), area);
}

pub fn render_composer(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let theme = &app.theme;
    let title = if app.editing.is_some() {
        strings::EDITING.to_string()
    } else if let Some(seq) = app.reply_to {
        let sender = app
            .rows()
            .iter()
            .find_map(|r| match r {
                crate::client::view::MessageRow::Message(m) if m.seq == Some(seq) => {
                    Some(m.sender.as_str())
                }
                _ => None,
            })
            .unwrap_or("?");
        strings::replying_to(sender)
    } else {
        strings::COMPOSER_TITLE.to_string()
    };
    let active = app.mode == Mode::Insert;
    let border = Style::default().fg(if active { theme.accent } else { theme.border });
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(border)
        .title(truncate(&format!(" {title} "), usize::from(area.width)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let text = app.composer.text();
    let rows = composer_rows(text, usize::from(inner.width));
    let (crow, ccol) = cursor_cell(text, &rows, app.composer.cursor());
    let visible = usize::from(inner.height.min(COMPOSER_MAX_ROWS)).max(1);
    let first = (crow + 1).saturating_sub(visible);
    let style = if active { theme.base() } else { theme.dimmed() };
    let lines: Vec<Line> = rows
        .iter()
        .skip(first)
        .take(visible)
        .map(|(_, r)| Line::styled(r.clone(), style))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
    if active && inner.height > 0 {
        let x = inner.x + (ccol as u16).min(inner.width.saturating_sub(1));
        let y = inner.y + ((crow - first) as u16).min(inner.height - 1);
        frame.set_cursor_position(Position::new(x, y));
    }
}

pub fn render_status(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let (badge, hints) = match app.mode {
        Mode::Normal => ("NORMAL", strings::NORMAL_HINTS),
        Mode::Insert => ("INSERT", strings::INSERT_HINTS),
        Mode::Help => ("HELP", ""),
        Mode::QuickSwitcher => ("GO TO", ""),
        Mode::ConfirmDelete { .. } => ("DELETE", strings::CONFIRM_DELETE),
        Mode::ConfirmUpload { .. } => ("UPLOAD", ""),
        Mode::Login => ("LOGIN", ""),
        Mode::Sessions => ("SESSIONS", ""),
        Mode::Search => ("SEARCH", ""),
        Mode::Devices { .. } => ("DEVICES", ""),
        Mode::Safety { .. } => ("SAFETY", ""),
        Mode::Verification => ("VERIFY", ""),
    };
    let badge_style = Style::default()
        .fg(theme.header_fg)
        .bg(theme.accent)
        .add_modifier(Modifier::BOLD);
    let (text, style) = match (&app.mode, &app.status, &app.model.notice) {
        (Mode::ConfirmDelete { .. }, _, _) => (hints.to_string(), Style::default().fg(theme.warn)),
        (Mode::ConfirmUpload { path, .. }, _, _) => {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            (
                strings::upload_offer(&crate::client::text::clean(&name)),
                Style::default().fg(theme.warn),
            )
        }
        (_, Some(s), _) => (s.clone(), Style::default().fg(theme.warn)),
        (_, None, Some(n)) => (n.clone(), theme.base()),
        _ => (hints.to_string(), theme.dimmed()),
    };
    let room = usize::from(area.width).saturating_sub(badge.len() + 3);
    let line = Line::from(vec![
        Span::styled(format!(" {badge} "), badge_style),
        Span::raw(" "),
        Span::styled(truncate(&text, room), style),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_cursor() {
        let rows = composer_rows("ab\n日本語x", 4);
        let texts: Vec<&str> = rows.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(texts, vec!["ab", "日本", "語x"]);
        let text = "ab\n日本語x";
        assert_eq!(cursor_cell(text, &rows, text.len()), (2, 3));
        assert_eq!(cursor_cell(text, &rows, 3), (1, 0));
        assert_eq!(composer_rows("", 0).len(), 1);
    }
}
