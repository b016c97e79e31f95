//! Rendering: a pure function of the [`App`]. Never mutates, never does
//! I/O. One sub-module per region: `header`, `list`, `messages` (with
//! `receipts` and `wrap`), `composer` (typing line, composer, status line),
//! `overlays` (help, quick switcher), `login`; `layout` places them.

pub mod composer;
pub mod header;
pub mod layout;
pub mod list;
pub mod login;
pub mod messages;
pub mod overlays;
pub mod receipts;
pub mod wrap;

use crate::ui::app::{App, Mode};
use layout::Areas;
use ratatui::Frame;
use ratatui::widgets::Block;

/// Draws the whole screen for `app`.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    frame.render_widget(Block::new().style(app.theme.base()), area);
    if app.mode == Mode::Login || app.model.needs_login {
        login::render(app, frame, area);
        return;
    }
    let areas = Areas::compute(area, app);
    header::render(app, frame, areas.header);
    if let Some(list_area) = areas.list {
        list::render(app, frame, list_area);
    }
    messages::render(app, frame, areas.messages);
    composer::render_typing(app, frame, areas.typing);
    composer::render_composer(app, frame, areas.composer);
    composer::render_status(app, frame, areas.status);
    match app.mode {
        Mode::Help => overlays::render_help(app, frame, area),
        Mode::QuickSwitcher => overlays::render_switcher(app, frame, area),
        _ => {}
    }
}
