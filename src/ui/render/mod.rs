//! Rendering: a pure function of the [`App`]. Never mutates, never does
//! I/O. One sub-module per region: `header`, `list`, `messages` (with
//! `receipts` and `wrap`), `composer` (typing line, composer, status line),
//! `overlays` (help, quick switcher), `sessions`, `secret` (identity-key
//! warnings; devices, safety number and verification overlays), `login`;
//! `layout` places them.
//! Bodies go through `markdown` (with `highlight` for code).

pub mod body_text;
pub mod composer;
pub mod header;
pub mod highlight;
pub mod layout;
pub mod list;
pub mod login;
pub mod markdown;
pub mod markdown_cache;
pub mod messages;
pub mod overlays;
pub mod receipts;
pub mod search;
pub mod secret;
pub mod sessions;
pub mod wrap;

use crate::ui::app::{App, Mode};
use layout::Areas;
use ratatui::Frame;
use ratatui::layout::Rect;
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
    secret::render_warnings(app, frame, areas.warning);
    composer::render_typing(app, frame, areas.typing);
    composer::render_composer(app, frame, areas.composer);
    composer::render_status(app, frame, areas.status);
    match app.mode {
        Mode::Help => overlays::render_help(app, frame, area),
        Mode::QuickSwitcher => overlays::render_switcher(app, frame, area),
        Mode::Sessions => sessions::render(app, frame, area),
        Mode::Search => search::render(app, frame, area),
        Mode::Devices { ref user } => secret::render_devices(app, frame, area, user),
        Mode::Safety { ref user } => secret::render_safety(app, frame, area, user),
        Mode::Verification => secret::render_verification(app, frame, area),
        _ => {}
    }
}

/// The digests of the inline images on screen, as last drawn.
pub fn images_on_screen(app: &App, area: Rect) -> Vec<String> {
    let open = matches!(
        app.mode,
        Mode::Normal | Mode::Insert | Mode::ConfirmDelete { .. } | Mode::ConfirmUpload { .. }
    );
    if !open || app.model.needs_login || area.width == 0 || area.height == 0 {
        return Vec::new();
    }
    messages::image_spots(app, Areas::compute(area, app).messages)
        .into_iter()
        .map(|(_, digest)| digest)
        .collect()
}

/// The URLs on screen and their cells, for terminal hyperlinks; none while
/// an overlay or the login screen covers the messages.
pub fn links(app: &App, area: Rect) -> Vec<(Rect, String)> {
    let open = matches!(
        app.mode,
        Mode::Normal | Mode::Insert | Mode::ConfirmDelete { .. } | Mode::ConfirmUpload { .. }
    );
    if !open || app.model.needs_login || area.width == 0 || area.height == 0 {
        return Vec::new();
    }
    messages::links(app, Areas::compute(area, app).messages)
}
