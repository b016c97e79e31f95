//! Where each region goes. Shared by rendering and by the App (which needs
//! the message pane's size for paging and scrollback), so both always agree.

use super::composer::composer_rows;
use crate::ui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};

/// Narrower than this, the conversation list is hidden.
pub const LIST_MIN_TOTAL_WIDTH: u16 = 60;
/// At most this many composer lines are shown at once.
pub const COMPOSER_MAX_ROWS: u16 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub list: Option<Rect>,
    pub messages: Rect,
    /// Warnings about members' changed identity keys (often no rows).
    pub warning: Rect,
    pub typing: Rect,
    pub composer: Rect,
    pub status: Rect,
}

impl Areas {
    pub fn compute(area: Rect, app: &App) -> Areas {
        let [header, body, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        let (list, right) = if area.width >= LIST_MIN_TOTAL_WIDTH {
            let list_w = (area.width / 4).clamp(20, 32);
            let [list, right] =
                Layout::horizontal([Constraint::Length(list_w), Constraint::Min(0)]).areas(body);
            (Some(list), right)
        } else {
            (None, body)
        };
        let rows = composer_rows(app.composer.text(), usize::from(right.width)).len();
        let composer_h = (rows as u16).clamp(1, COMPOSER_MAX_ROWS) + 1;
        let room = usize::from(right.height / 3).max(2);
        let warnings = super::secret::warning_lines(app, usize::from(right.width), room).len();
        let [messages, warning, typing, composer] = Layout::vertical([
            Constraint::Min(0),
            Constraint::Length(warnings as u16),
            Constraint::Length(1),
            Constraint::Length(composer_h),
        ])
        .areas(right);
        Areas {
            header,
            list,
            messages,
            warning,
            typing,
            composer,
            status,
        }
    }
}

/// A centred rectangle of at most `w`×`h` inside `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
