//! The login / register screen: username, masked password, the invitation
//! code (registering), the engine's error line and the keys.

use super::layout::centered;
use super::wrap::{str_width, truncate};
use crate::client::view::ConnState;
use crate::ui::app::App;
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

pub fn render(app: &App, frame: &mut Frame, full: Rect) {
    let theme = &app.theme;
    frame.render_widget(Clear, full);
    let form = &app.login;
    let width = full.width.saturating_sub(2).min(56);
    // A long reason (a refusal, why the session ended) wraps onto up to
    // three lines.
    let error = app.status.as_deref().or(app.model.login_error.as_deref());
    let error_w = error.map_or(0, str_width);
    let error_lines = error_w
        .div_ceil(usize::from(width.saturating_sub(2)).max(1))
        .clamp(1, 3);
    let height = if form.register { 13 } else { 11 } + error_lines as u16 - 1;
    let area = centered(full, width, height);
    let title = if form.register {
        strings::REGISTER_TITLE
    } else {
        strings::LOGIN_TITLE
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(theme.accent))
        .title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width < 4 || inner.height == 0 {
        return;
    }
    let iw = usize::from(inner.width);
    let mut label_w = strings::USERNAME.len().max(strings::PASSWORD.len());
    if form.register {
        label_w = label_w.max(strings::INVITATION.len());
    }
    let label_w = label_w + 2;
    let field_w = iw.saturating_sub(label_w + 1);
    let masked: String = "•".repeat(form.password.chars().count());
    let field = |label: &str, value: &str, active: bool| {
        let shown = tail(value, field_w.saturating_sub(1));
        let style = if active {
            theme.selected().add_modifier(Modifier::BOLD)
        } else {
            theme.selected()
        };
        let pad = field_w.saturating_sub(str_width(&shown));
        Line::from(vec![
            Span::styled(format!(" {label:<w$}", w = label_w - 1), theme.base()),
            Span::styled(format!("{shown}{}", " ".repeat(pad)), style),
        ])
    };
    let mut lines = vec![
        Line::styled(
            truncate(&strings::login_server(&app.model.server), iw),
            theme.dimmed(),
        ),
        Line::raw(""),
        field(strings::USERNAME, &form.username, form.field == 0),
        Line::raw(""),
        field(strings::PASSWORD, &masked, form.field == 1),
        Line::raw(""),
    ];
    if form.register {
        let mut invite = field(strings::INVITATION, &form.invite, form.field == 2);
        if form.invite.is_empty() && form.field != 2 {
            invite = Line::from(vec![
                Span::styled(
                    format!(" {:<w$}", strings::INVITATION, w = label_w - 1),
                    theme.base(),
                ),
                Span::styled(
                    truncate(strings::INVITATION_OPTIONAL, field_w),
                    theme.dimmed(),
                ),
            ]);
        }
        lines.push(invite);
        lines.push(Line::raw(""));
    }
    lines.push(match error {
        Some(e) => Line::styled(
            truncate(e, iw * error_lines),
            Style::default().fg(theme.error),
        ),
        None => Line::raw(""),
    });
    lines.push(Line::styled(strings::LOGIN_HINTS, theme.dimmed()));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    let value = match form.field {
        0 => &form.username,
        1 => &masked,
        _ => &form.invite,
    };
    let col = str_width(&tail(value, field_w.saturating_sub(1)));
    let x = inner.x + (label_w + col).min(iw.saturating_sub(1)) as u16;
    let y = inner.y + 2 + 2 * form.field.min(2) as u16;
    if y < inner.y + inner.height {
        frame.set_cursor_position(Position::new(x, y));
    }
    // Under the form: why a login cannot go through yet, or the engine's notice.
    let below = Rect {
        x: full.x,
        y: area.y + area.height,
        width: full.width,
        height: 1,
    };
    let line = match &app.model.conn {
        ConnState::Reconnecting { in_secs, reason } => {
            Some(strings::login_unreachable(reason, *in_secs))
        }
        _ => app.model.notice.clone(),
    };
    if let Some(text) = line
        && below.y < full.y + full.height
    {
        let text = truncate(&text, usize::from(full.width));
        frame.render_widget(
            Paragraph::new(Line::styled(text, theme.dimmed())).centered(),
            below,
        );
    }
}

/// The end of `s` that fits in `width` columns (the cursor sits at the end).
fn tail(s: &str, width: usize) -> String {
    let mut out: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let w = str_width(c.encode_utf8(&mut [0; 4]));
        if used + w > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out.into_iter().rev().collect()
}
