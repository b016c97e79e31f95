//! The message view's position: scrolling by lines, keeping the selection
//! on screen, asking for older history at the top, and moving my read
//! pointer when the newest message is visible.

use super::{App, Mode};
use crate::client::Action;
use crate::client::view::MessageRow;
use crate::ui::render;

/// The seq a row carries, if any.
pub(crate) fn row_seq(row: &MessageRow) -> Option<u64> {
    match row {
        MessageRow::Message(m) => m.seq,
        MessageRow::System { seq, .. } => Some(*seq),
        MessageRow::Missing { .. } => None,
    }
}

impl App {
    /// Total laid-out lines of the focused conversation and the height of
    /// the message pane, at the current terminal size.
    pub(crate) fn view_metrics(&self) -> (render::messages::Laid, usize) {
        let areas = render::layout::Areas::compute(self.size_rect(), self);
        let laid = render::messages::lay_out(self, areas.messages.width);
        (laid, usize::from(areas.messages.height))
    }

    pub(crate) fn size_rect(&self) -> ratatui::layout::Rect {
        ratatui::layout::Rect::new(0, 0, self.size.0, self.size.1)
    }

    pub(crate) fn page_height(&self) -> usize {
        self.view_metrics().1.max(1)
    }

    /// Scrolls up (positive) or down (negative) by lines; drops the selection.
    pub(crate) fn scroll_lines(&mut self, delta: isize) {
        self.selected = None;
        self.scroll = self.scroll.saturating_add_signed(delta);
        self.scroll = self.scroll.min(self.view_metrics().0.lines.len());
    }

    /// Bounds the scroll offset and scrolls the selection into view.
    pub(crate) fn clamp_view(&mut self) {
        if self.selected.is_some() && self.selected_index().is_none() {
            self.selected = None;
        }
        let (laid, h) = self.view_metrics();
        let total = laid.lines.len();
        self.scroll = self.scroll.min(total.saturating_sub(h));
        if let Some(idx) = self.selected_index() {
            let first = laid.row_of_line.iter().position(|r| *r == Some(idx));
            let last = laid.row_of_line.iter().rposition(|r| *r == Some(idx));
            if let (Some(first), Some(last)) = (first, last) {
                let bottom = total.saturating_sub(self.scroll);
                let top = bottom.saturating_sub(h);
                if last + 1 > bottom {
                    self.scroll = total - (last + 1);
                } else if first < top {
                    self.scroll = total.saturating_sub(first + h);
                }
            }
        }
        self.scroll = self.scroll.min(total.saturating_sub(h));
    }

    /// Index into `rows()` of the selected message.
    pub fn selected_index(&self) -> Option<usize> {
        let sel = self.selected?;
        self.rows().iter().position(|r| row_seq(r) == Some(sel))
    }

    fn top_visible(&self) -> bool {
        let (laid, h) = self.view_metrics();
        self.scroll + h >= laid.lines.len()
    }

    /// Asks once for the page before the oldest loaded row when the top of
    /// the loaded window is on screen.
    pub(crate) fn check_scrollback(&mut self, out: &mut Vec<Action>) {
        let Some(conv) = self.focused.clone() else {
            return;
        };
        if self.model.loading_older {
            return;
        }
        let Some(first) = self.rows().first().and_then(row_seq) else {
            return;
        };
        let request = (conv.clone(), first);
        if first <= 1 || self.older_requested.as_ref() == Some(&request) || !self.top_visible() {
            return;
        }
        self.older_requested = Some(request);
        out.push(Action::LoadOlder {
            conv,
            before_seq: first,
        });
    }

    /// Marks the newest loaded message read when it is visible to the user:
    /// conversation shown, scrolled to the bottom, terminal focused. Only
    /// ever moves forward.
    pub(crate) fn check_read(&mut self, out: &mut Vec<Action>) {
        let Some(conv) = self.focused.clone() else {
            return;
        };
        let visible = matches!(
            self.mode,
            Mode::Normal | Mode::Insert | Mode::ConfirmDelete { .. } | Mode::ConfirmUpload { .. }
        );
        if !visible || !self.terminal_focused || self.scroll != 0 {
            return;
        }
        let Some(newest) = self.rows().iter().filter_map(row_seq).max() else {
            return;
        };
        let read = self.model.conversation(&conv).map_or(0, |c| c.read_seq);
        let marked = self.marked.get(&conv).copied().unwrap_or(0);
        if newest > read && newest > marked {
            self.marked.insert(conv.clone(), newest);
            out.push(Action::MarkRead { conv, seq: newest });
        }
    }
}
