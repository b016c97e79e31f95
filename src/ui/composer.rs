//! The composer: a multi-line text buffer with a cursor that only ever sits
//! on a char boundary (combining marks move with their base character), plus
//! the input history.

use unicode_segmentation::UnicodeSegmentation;

#[derive(Debug, Clone, Default)]
pub struct Composer {
    text: String,
    /// Byte offset, always on a char boundary.
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing history; `None` when editing the draft.
    hist_pos: Option<usize>,
    draft: String,
}

const HISTORY_MAX: usize = 200;

impl Composer {
    pub fn text(&self) -> &str {
        &self.text
    }
    pub fn cursor(&self) -> usize {
        self.cursor
    }
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: &str) {
        self.text = text.to_string();
        self.cursor = self.text.len();
    }

    /// Empties the buffer and returns what it held.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        self.hist_pos = None;
        std::mem::take(&mut self.text)
    }

    pub fn insert_str(&mut self, s: &str) {
        let s = s.replace("\r\n", "\n").replace('\r', "\n");
        self.text.insert_str(self.cursor, &s);
        self.cursor += s.len();
    }

    pub fn insert_char(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Byte offset of the grapheme cluster start before `at` (an emoji
    /// sequence joined with ZWJ, a flag, a letter with its accents).
    fn prev_boundary(&self, at: usize) -> usize {
        self.text[..at]
            .grapheme_indices(true)
            .next_back()
            .map(|(i, _)| i)
            .unwrap_or(0)
    }

    /// Byte offset after the grapheme cluster starting at `at`.
    fn next_boundary(&self, at: usize) -> usize {
        self.text[at..]
            .graphemes(true)
            .next()
            .map(|g| at + g.len())
            .unwrap_or(at)
    }

    pub fn backspace(&mut self) {
        let start = self.prev_boundary(self.cursor);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    pub fn delete(&mut self) {
        let end = self.next_boundary(self.cursor);
        self.text.replace_range(self.cursor..end, "");
    }

    /// Deletes the word before the cursor (Ctrl-w).
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    pub fn left(&mut self) {
        self.cursor = self.prev_boundary(self.cursor);
    }
    pub fn right(&mut self) {
        self.cursor = self.next_boundary(self.cursor);
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }
    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }
    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }
    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    pub fn on_first_line(&self) -> bool {
        !self.text[..self.cursor].contains('\n')
    }
    pub fn on_last_line(&self) -> bool {
        !self.text[self.cursor..].contains('\n')
    }

    /// Moves to the previous line, keeping the char column where possible.
    pub fn up(&mut self) {
        let start = self.line_start();
        if start == 0 {
            return;
        }
        let col = self.text[start..self.cursor].chars().count();
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        self.cursor = self.offset_at_col(prev_start, start - 1, col);
    }

    pub fn down(&mut self) {
        let end = self.line_end();
        if end >= self.text.len() {
            return;
        }
        let col = self.text[self.line_start()..self.cursor].chars().count();
        let next_start = end + 1;
        let next_end = self.text[next_start..]
            .find('\n')
            .map_or(self.text.len(), |i| next_start + i);
        self.cursor = self.offset_at_col(next_start, next_end, col);
    }

    fn offset_at_col(&self, start: usize, end: usize, col: usize) -> usize {
        self.text[start..end]
            .char_indices()
            .nth(col)
            .map_or(end, |(i, _)| start + i)
    }

    /// Records a sent line for Up/Down recall.
    pub fn push_history(&mut self, line: &str) {
        if line.trim().is_empty() || self.history.last().is_some_and(|l| l == line) {
            return;
        }
        self.history.push(line.to_string());
        if self.history.len() > HISTORY_MAX {
            self.history.remove(0);
        }
        self.hist_pos = None;
    }

    /// Recalls the previous history entry. Returns whether anything changed.
    pub fn history_prev(&mut self) -> bool {
        let pos = match self.hist_pos {
            None if self.history.is_empty() => return false,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return false,
            Some(p) => p - 1,
        };
        self.hist_pos = Some(pos);
        let entry = self.history[pos].clone();
        self.set(&entry);
        true
    }

    /// Moves forward in history, back to the draft at the end.
    pub fn history_next(&mut self) -> bool {
        let Some(pos) = self.hist_pos else {
            return false;
        };
        if pos + 1 < self.history.len() {
            self.hist_pos = Some(pos + 1);
            let entry = self.history[pos + 1].clone();
            self.set(&entry);
        } else {
            self.hist_pos = None;
            let draft = std::mem::take(&mut self.draft);
            self.set(&draft);
        }
        true
    }

    /// Replaces the byte range `range` (on char boundaries) and puts the
    /// cursor after the replacement.
    pub fn replace_range(&mut self, range: std::ops::Range<usize>, with: &str) {
        if range.start > range.end
            || range.end > self.text.len()
            || !self.text.is_char_boundary(range.start)
            || !self.text.is_char_boundary(range.end)
        {
            return;
        }
        self.text.replace_range(range.clone(), with);
        self.cursor = range.start + with.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_multibyte_without_panicking() {
        let mut c = Composer::default();
        c.insert_str("héllo 世界 👍🏽");
        c.backspace();
        assert_eq!(
            c.text(),
            "héllo 世界 ",
            "an emoji with its skin tone is one"
        );
        c.insert_str("👍");
        c.left();
        c.left();
        c.insert_char('x');
        assert_eq!(c.text(), "héllo 世界x 👍");
        c.home();
        c.right();
        c.right();
        c.delete();
        assert_eq!(c.text(), "hélo 世界x 👍");
        c.end();
        c.delete();
        c.right();
        assert_eq!(c.cursor(), c.text().len());
    }

    #[test]
    fn combining_marks_move_with_their_base() {
        let mut c = Composer::default();
        c.insert_str("e\u{301}a");
        c.left();
        c.left();
        assert_eq!(c.cursor(), 0);
        c.delete();
        assert_eq!(c.text(), "a");
    }

    #[test]
    fn joined_emoji_and_flags_are_one_step() {
        let mut c = Composer::default();
        c.set("a👨‍👩‍👧🇫🇷");
        c.backspace();
        assert_eq!(c.text(), "a👨‍👩‍👧", "a flag is one cluster");
        c.left();
        assert_eq!(c.cursor(), 1, "the family emoji is one cluster");
        c.delete();
        assert_eq!(c.text(), "a");
    }

    #[test]
    fn lines_and_vertical_moves() {
        let mut c = Composer::default();
        c.insert_str("first\r\nsecond line\nx");
        assert!(c.on_last_line() && !c.on_first_line());
        c.up();
        assert_eq!(&c.text()[..c.cursor()], "first\ns");
        c.up();
        assert_eq!(&c.text()[..c.cursor()], "f");
        assert!(c.on_first_line());
        c.down();
        c.down();
        assert_eq!(c.cursor(), c.text().len());
        c.delete_word();
        assert_eq!(c.text(), "first\nsecond line\n");
    }

    #[test]
    fn history_round_trip_keeps_draft() {
        let mut c = Composer::default();
        c.push_history("one");
        c.push_history("two");
        c.insert_str("draft");
        assert!(c.history_prev());
        assert_eq!(c.text(), "two");
        assert!(c.history_prev());
        assert_eq!(c.text(), "one");
        assert!(!c.history_prev());
        assert!(c.history_next());
        assert!(c.history_next());
        assert_eq!(c.text(), "draft");
        assert!(!c.history_next());
    }
}
