//! Secret conversations on screen: the identity-key warnings above the
//! composer, and the devices, safety-number and verification overlays.
//! Usernames, device ids and names pass through `clean`: other people
//! chose them.

use super::layout::centered;
use super::overlays::popup;
use super::wrap::{str_width, to_spans, truncate, wrap};
use crate::client::text::clean;
use crate::client::update::{DeviceLine, DevicesView, IdentityNote, VerificationView};
use crate::ui::app::App;
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

/// At most this many warning lines sit between the messages and the
/// composer (and never more than a third of the pane's height, but two).
pub const WARNING_MAX_ROWS: usize = 6;

/// `text` word-wrapped to `width` columns in one style.
fn wrapped(text: &str, style: Style, width: usize) -> Vec<Line<'static>> {
    wrap(&[(text.to_string(), style)], width, width)
        .iter()
        .map(|chars| Line::from(to_spans(chars)))
        .collect()
}

/// The warnings of the focused conversation about its members' changed
/// identity keys, wrapped to `width`, those that hold sending back first;
/// at most `max_rows` lines.
pub fn warning_lines(app: &App, width: usize, max_rows: usize) -> Vec<Line<'static>> {
    let Some(conv) = app.focused.as_deref() else {
        return Vec::new();
    };
    let style = Style::default()
        .fg(app.theme.warn)
        .add_modifier(Modifier::BOLD);
    let mut warnings = app.model.identity_warnings(conv);
    warnings.sort_by_key(|(_, note)| *note != IdentityNote::ChangedBlocking);
    let mut lines = Vec::new();
    for (user, note) in warnings {
        let user = clean(user);
        let text = match note {
            IdentityNote::ChangedBlocking => strings::identity_changed_blocking(&user),
            _ => strings::identity_changed(&user),
        };
        lines.extend(wrapped(&text, style, width));
    }
    lines.truncate(max_rows.min(WARNING_MAX_ROWS));
    lines
}

pub fn render_warnings(app: &App, frame: &mut Frame, area: Rect) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let lines = warning_lines(app, usize::from(area.width), usize::from(area.height));
    frame.render_widget(Paragraph::new(lines), area);
}

/// One device: its id and name, its marks, its fingerprint.
fn device_lines(app: &App, d: &DeviceLine, width: usize) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let bold = theme.base().add_modifier(Modifier::BOLD);
    let name = clean(&d.name);
    let head = if name.is_empty() {
        format!(" {}", clean(&d.device_id))
    } else {
        format!(" {} · {name}", clean(&d.device_id))
    };
    let mut lines = vec![Line::styled(truncate(&head, width), bold)];
    let ok = Style::default().fg(theme.ok);
    let mut marks = vec![Span::raw("   ")];
    if d.certified {
        marks.push(Span::styled(strings::DEVICE_CERTIFIED, ok));
    } else {
        marks.push(Span::styled(
            strings::DEVICE_UNCERTIFIED,
            Style::default().fg(theme.warn),
        ));
    }
    if d.verified {
        marks.push(Span::raw(" · "));
        marks.push(Span::styled(strings::DEVICE_VERIFIED, ok));
    }
    if d.this_device {
        marks.push(Span::raw(" · "));
        marks.push(Span::styled(
            strings::DEVICE_THIS,
            Style::default().fg(theme.accent),
        ));
    }
    lines.push(Line::from(marks));
    for l in wrapped(
        &clean(&d.fingerprint),
        theme.dimmed(),
        width.saturating_sub(3),
    ) {
        let mut spans = vec![Span::raw("   ")];
        spans.extend(l.spans);
        lines.push(Line::from(spans));
    }
    lines
}

/// The devices overlay's body (without the hints line) at `width`.
fn devices_body(app: &App, user: &str, width: usize) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let Some(view) = app.model.devices.get(user) else {
        return vec![Line::styled(strings::DEVICES_LOADING, theme.dimmed())];
    };
    if let Some(e) = &view.error {
        let style = Style::default().fg(theme.error);
        return wrapped(&clean(e), style, width);
    }
    let mut lines = trust_lines(app, view, width);
    if let Some(key) = &view.identity_key {
        let key = strings::identity_key(&clean(key));
        lines.extend(wrapped(&key, theme.dimmed(), width));
    }
    if view.devices.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(strings::DEVICES_NONE, theme.dimmed()));
    }
    for d in &view.devices {
        lines.push(Line::raw(""));
        lines.extend(device_lines(app, d, width));
    }
    lines
}

/// How far the identity key is trusted, in the colour of the trust.
fn trust_lines(app: &App, view: &DevicesView, width: usize) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let trust = clean(&view.trust);
    let colour = match trust.as_str() {
        "verified" => theme.ok,
        "unverified" => theme.fg,
        _ => theme.warn,
    };
    wrapped(&strings::trust(&trust), Style::default().fg(colour), width)
}

fn devices_hints(app: &App, user: &str, width: usize) -> Vec<Line<'static>> {
    let hints = strings::devices_hints(&clean(user));
    wrapped(&hints, app.theme.dimmed(), width)
}

fn devices_area(full: Rect) -> Rect {
    let w = full.width.saturating_sub(4).min(72);
    centered(full, w, full.height.saturating_sub(2))
}

/// How far the devices overlay of `user` can scroll on a `full` screen.
pub fn devices_max_scroll(app: &App, user: &str, full: Rect) -> usize {
    let area = devices_area(full);
    let width = usize::from(area.width.saturating_sub(2));
    let hints = devices_hints(app, user, width).len();
    let room = usize::from(area.height.saturating_sub(2)).saturating_sub(hints);
    devices_body(app, user, width).len().saturating_sub(room)
}

pub fn render_devices(app: &App, frame: &mut Frame, full: Rect, user: &str) {
    let mut area = devices_area(full);
    let width = usize::from(area.width.saturating_sub(2));
    let body = devices_body(app, user, width);
    // As tall as it needs, no taller than the screen allows.
    let hints = devices_hints(app, user, width).len();
    area = centered(full, area.width, (body.len() + hints) as u16 + 3);
    let mine = user == app.model.me;
    let inner = popup(
        app,
        frame,
        area,
        &strings::devices_title(&clean(user), mine),
    );
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let hints = devices_hints(app, user, width);
    let room = usize::from(inner.height).saturating_sub(hints.len());
    let scroll = app.devices_scroll.min(body.len().saturating_sub(room));
    let mut lines: Vec<Line<'static>> = body.into_iter().skip(scroll).take(room).collect();
    while lines.len() < room {
        lines.push(Line::raw(""));
    }
    lines.extend(hints);
    frame.render_widget(Paragraph::new(lines), inner);
}

pub fn render_safety(app: &App, frame: &mut Frame, full: Rect, user: &str) {
    let theme = &app.theme;
    let w = full.width.saturating_sub(4).min(60);
    let width = usize::from(w.saturating_sub(2));
    let name = clean(user);
    let view = app.model.devices.get(user);
    let changed = app.model.identity_changes.contains_key(user);
    let mut lines = vec![Line::raw("")];
    match view {
        None => lines.push(Line::styled(strings::DEVICES_LOADING, theme.dimmed())),
        Some(DevicesView { error: Some(e), .. }) => {
            lines.extend(wrapped(&clean(e), Style::default().fg(theme.error), width));
        }
        Some(DevicesView {
            safety_number: Some(number),
            ..
        }) => {
            let groups: Vec<&str> = number.split_whitespace().collect();
            // Four groups of five digits a line, fewer when narrow.
            let per_line = match width {
                w if w >= 23 => 4,
                w if w >= 11 => 2,
                _ => 1,
            };
            let bold = theme.base().add_modifier(Modifier::BOLD);
            for chunk in groups.chunks(per_line) {
                lines.push(Line::styled(clean(&chunk.join(" ")), bold).centered());
            }
            lines.push(Line::raw(""));
            let compare = strings::safety_compare(&name, &clean(&app.model.me));
            lines.extend(wrapped(&compare, theme.base(), width));
        }
        Some(_) => lines.extend(wrapped(&strings::safety_none(&name), theme.dimmed(), width)),
    }
    if let Some(v) = view.filter(|v| v.error.is_none()) {
        lines.extend(trust_lines(app, v, width));
    }
    if changed {
        let warn = Style::default().fg(theme.warn).add_modifier(Modifier::BOLD);
        lines.extend(wrapped(&strings::safety_changed(&name), warn, width));
    }
    lines.push(Line::raw(""));
    let hints = if changed {
        strings::SAFETY_HINTS_CHANGED
    } else {
        strings::SAFETY_HINTS
    };
    lines.extend(wrapped(hints, theme.dimmed(), width));
    let area = centered(full, w, (lines.len() as u16).saturating_add(2));
    let inner = popup(app, frame, area, &strings::safety_title(&name));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The seven emoji with their names as a grid of cells, centred in
/// `width` columns: as many in a row as fit, the rows as even as can be.
fn emoji_grid(app: &App, emoji: &[String], width: usize) -> Vec<Line<'static>> {
    let pairs: Vec<(String, String)> = emoji
        .iter()
        .map(|e| {
            let (sym, name) = e.split_once(' ').unwrap_or((e.as_str(), ""));
            (clean(sym), clean(name))
        })
        .collect();
    let n = pairs.len().max(1);
    let name_w = pairs.iter().map(|(_, n)| str_width(n)).max().unwrap_or(0);
    let cell = (name_w.max(2) + 2).min(width.max(1));
    let fit = (width / cell).clamp(1, n);
    let rows = n.div_ceil(fit);
    let cols = n.div_ceil(rows);
    let bold = app.theme.base().add_modifier(Modifier::BOLD);
    let mut lines = Vec::new();
    for row in pairs.chunks(cols) {
        let used = row.len() * cell;
        let left = " ".repeat(width.saturating_sub(used) / 2);
        let (mut pics, mut names) = (left.clone(), left);
        for (sym, name) in row {
            // The picture's width as the terminal buffer measures it (an
            // emoji with a variation selector is two cells).
            pics.push_str(&centre(sym, sym.width(), cell));
            let name = truncate(name, cell.saturating_sub(1));
            names.push_str(&centre(&name, str_width(&name), cell));
        }
        lines.push(Line::raw(pics));
        lines.push(Line::styled(names, bold));
        lines.push(Line::raw(""));
    }
    lines
}

/// `text` (`w` columns) centred in a cell of `cell` columns.
fn centre(text: &str, w: usize, cell: usize) -> String {
    let left = cell.saturating_sub(w) / 2;
    let right = cell.saturating_sub(w + left);
    format!("{}{text}{}", " ".repeat(left), " ".repeat(right))
}

/// What the verification overlay says below its title.
fn verification_lines(app: &App, v: &VerificationView, width: usize) -> Vec<Line<'static>> {
    let theme = &app.theme;
    let user = clean(&v.user);
    let device = clean(&v.device_id);
    let state = strings::verify_state(&clean(&v.state));
    let mut lines = wrapped(&state, theme.dimmed(), width);
    lines.push(Line::raw(""));
    if !v.emoji.is_empty() && v.cancelled.is_none() {
        lines.extend(emoji_grid(app, &v.emoji, width));
    }
    let strong = |colour| Style::default().fg(colour).add_modifier(Modifier::BOLD);
    if let Some(why) = &v.cancelled {
        lines.extend(wrapped(
            &strings::verify_cancelled(&clean(why)),
            strong(theme.error),
            width,
        ));
    } else if v.done {
        lines.push(Line::styled(strings::VERIFY_DONE, strong(theme.ok)).centered());
        lines.extend(wrapped(
            &strings::verify_done(&user, &device),
            theme.base(),
            width,
        ));
    } else if v.emoji.is_empty() {
        lines.extend(wrapped(
            &strings::verify_waiting(&user),
            theme.base(),
            width,
        ));
    } else if app.verify.answered(&v.transaction_id) {
        lines.extend(wrapped(strings::VERIFY_ANSWERED, theme.base(), width));
    } else {
        lines.extend(wrapped(
            &strings::verify_question(&user),
            strong(theme.accent),
            width,
        ));
    }
    lines.push(Line::raw(""));
    let asking = !v.emoji.is_empty()
        && !v.done
        && v.cancelled.is_none()
        && !app.verify.answered(&v.transaction_id);
    let hints = match () {
        _ if v.done || v.cancelled.is_some() => strings::VERIFY_HINTS_OVER,
        _ if asking => strings::VERIFY_HINTS_ASK,
        _ => strings::VERIFY_HINTS,
    };
    lines.extend(wrapped(hints, theme.dimmed(), width));
    let all = &app.model.verifications;
    if all.len() > 1 {
        let at = all
            .iter()
            .position(|x| x.transaction_id == v.transaction_id)
            .map_or(1, |i| i + 1);
        let text = strings::verify_others(at, all.len());
        lines.push(Line::styled(text, theme.dimmed()).alignment(Alignment::Right));
    }
    lines
}

pub fn render_verification(app: &App, frame: &mut Frame, full: Rect) {
    let Some(v) = app.shown_verification() else {
        return;
    };
    let w = full.width.saturating_sub(4).min(72);
    let width = usize::from(w.saturating_sub(2));
    let lines = verification_lines(app, v, width);
    let area = centered(full, w, (lines.len() as u16).saturating_add(2));
    let mine = v.user == app.model.me;
    let title = strings::verify_title(&clean(&v.user), &clean(&v.device_id), mine);
    let inner = popup(app, frame, area, &title);
    frame.render_widget(Paragraph::new(lines), inner);
}
