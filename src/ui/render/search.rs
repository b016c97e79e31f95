//! The search overlay: the prompt, then each hit on two lines (where, who,
//! when, from which source; then the snippet with the matched words
//! marked), the selected one highlighted, and the server's state last.

use super::layout::centered;
use super::wrap::{char_width, pad, truncate};
use crate::client::HitSource;
use crate::client::text::clean;
use crate::proto::SearchHit;
use crate::ui::app::{App, ServerState, kind_marker};
use crate::ui::strings;
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// The snippet as spans, the matched words marked, cut to `width` cells.
fn snippet_line(app: &App, hit: &SearchHit, width: usize, base: Style) -> Line<'static> {
    let text = &hit.snippet;
    let mark = base
        .fg(app.theme.mention)
        .add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
    // Ranges from the wire are checked: in order, inside, on boundaries.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for [a, b] in &hit.highlights {
        let (a, b) = (*a, *b);
        let after_last = ranges.last().is_none_or(|r| a >= r.1);
        if a < b
            && b <= text.len()
            && text.is_char_boundary(a)
            && text.is_char_boundary(b)
            && after_last
        {
            ranges.push((a, b));
        }
    }
    let mut spans = vec![Span::styled("   ".to_string(), base)];
    let mut used = 3;
    let mut at = 0;
    let mut pieces: Vec<(&str, bool)> = Vec::new();
    for (a, b) in ranges {
        pieces.push((&text[at..a], false));
        pieces.push((&text[a..b], true));
        at = b;
    }
    pieces.push((&text[at..], false));
    'out: for (piece, marked) in pieces {
        let mut shown = String::new();
        for c in clean(piece).chars() {
            let w = char_width(c);
            if used + w > width {
                spans.push(Span::styled(shown, if marked { mark } else { base }));
                break 'out;
            }
            used += w;
            shown.push(c);
        }
        spans.push(Span::styled(shown, if marked { mark } else { base }));
    }
    Line::from(spans)
}

fn head_line(
    app: &App,
    hit: &SearchHit,
    source: HitSource,
    width: usize,
    style: Style,
) -> Line<'static> {
    let conv = match app.model.conversation(&hit.conversation_id) {
        Some(c) => format!("{}{}", kind_marker(c.kind), c.title),
        None => hit.conversation_id.clone(),
    };
    let w = app.tz.wall(hit.ts);
    let text = format!(
        " {}  {}  {:04}-{:02}-{:02} {:02}:{:02}  #{}  [{}]",
        clean(&conv),
        clean(&hit.sender),
        w.year,
        w.month,
        w.day,
        w.hour,
        w.minute,
        hit.seq,
        source.as_str()
    );
    Line::styled(truncate(&text, width), style.add_modifier(Modifier::BOLD))
}

pub fn render(app: &App, frame: &mut Frame, full: Rect) {
    let s = &app.search;
    let w = full.width.saturating_sub(4).min(100);
    let h = full.height.saturating_sub(2).clamp(5, 3 + 2 * 8 + 1);
    let mut area = centered(full, w, h);
    area.y = full.y + (full.height.saturating_sub(h) / 4);
    frame.render_widget(Clear, area);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(app.theme.accent))
        .title(truncate(
            strings::SEARCH_TITLE,
            usize::from(area.width.saturating_sub(2)),
        ))
        .style(app.theme.base());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let iw = usize::from(inner.width);
    let prompt = format!("› {}", s.query);
    let mut lines = vec![Line::styled(
        truncate(&prompt, iw),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    let footer = match (&s.server, s.ran.is_some(), s.hits.is_empty()) {
        (_, false, _) => Some((strings::SEARCH_HINT.to_string(), app.theme.dimmed())),
        (ServerState::Waiting, _, _) => {
            Some((strings::SEARCH_WAITING.to_string(), app.theme.dimmed()))
        }
        (ServerState::Failed(e), _, _) => Some((
            strings::search_failed(&clean(e)),
            Style::default().fg(app.theme.warn),
        )),
        (_, true, true) => Some((strings::SEARCH_NONE.to_string(), app.theme.dimmed())),
        _ => None,
    };
    let room = usize::from(inner.height).saturating_sub(1 + usize::from(footer.is_some())) / 2;
    let sel = s.selected.min(s.hits.len().saturating_sub(1));
    let first = (sel + 1).saturating_sub(room);
    for (i, (hit, source)) in s.hits.iter().enumerate().skip(first).take(room) {
        let style = if i == sel {
            app.theme.selected()
        } else {
            app.theme.base()
        };
        let mut head = head_line(app, hit, *source, iw, style);
        let mut body = snippet_line(app, hit, iw, style);
        if i == sel {
            pad(&mut head, iw, style);
            pad(&mut body, iw, style);
        }
        lines.push(head);
        lines.push(body);
    }
    if let Some((text, style)) = footer {
        lines.push(Line::styled(truncate(&text, iw), style));
    }
    frame.render_widget(Paragraph::new(lines), inner);
    let x = inner.x + (super::wrap::str_width(&prompt) as u16).min(inner.width.saturating_sub(1));
    frame.set_cursor_position(Position::new(x, inner.y));
}
