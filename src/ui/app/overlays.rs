//! The modal overlays: help (scrolling when it does not fit), the quick switcher (fuzzy over conversations
//! and users), the delete confirmation, and the login form.

use super::{App, Mode};
use crate::client::Action;
use crate::proto::ConvKind;
use crate::ui::{fuzzy, strings};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Default)]
pub struct Switcher {
    pub query: String,
    pub selected: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchTarget {
    Conversation(String),
    /// A user without a DM yet.
    User(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchItem {
    /// `@`, `#`, `+`, or a space for a new DM.
    pub marker: char,
    pub label: String,
    pub target: SwitchTarget,
    pub unread: u64,
}

/// The login screen's fields.
#[derive(Debug, Clone, Default)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    /// The invitation code (registering only; optional).
    pub invite: String,
    /// 0 = username, 1 = password, 2 = invitation.
    pub field: usize,
    /// Register a new account instead of logging in.
    pub register: bool,
}

impl LoginForm {
    fn current(&mut self) -> &mut String {
        match self.field {
            0 => &mut self.username,
            1 => &mut self.password,
            _ => &mut self.invite,
        }
    }
    /// How many fields the form shows.
    pub fn fields(&self) -> usize {
        if self.register { 3 } else { 2 }
    }
    pub(super) fn paste(&mut self, text: &str) {
        let line = text.lines().next().unwrap_or("").to_string();
        self.current().push_str(&line);
    }
}

pub fn kind_marker(kind: ConvKind) -> char {
    match kind {
        ConvKind::Dm => '@',
        ConvKind::Channel => '#',
        ConvKind::Group => '+',
    }
}

impl App {
    pub(crate) fn open_help(&mut self) {
        self.help_scroll = 0;
        self.mode = Mode::Help;
    }

    pub(super) fn help_key(&mut self, k: KeyEvent) {
        let full = ratatui::layout::Rect::new(0, 0, self.size.0, self.size.1);
        let max = crate::ui::render::overlays::help_max_scroll(self, full);
        let page = usize::from(self.size.1 / 2).max(1);
        let scroll = &mut self.help_scroll;
        match k.code {
            KeyCode::Esc | KeyCode::Char('q' | '?') | KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Down | KeyCode::Char('j') => *scroll = (*scroll + 1).min(max),
            KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
            KeyCode::PageDown | KeyCode::Char(' ') => *scroll = (*scroll + page).min(max),
            KeyCode::PageUp => *scroll = scroll.saturating_sub(page),
            KeyCode::Home | KeyCode::Char('g') => *scroll = 0,
            KeyCode::End | KeyCode::Char('G') => *scroll = max,
            _ => {}
        }
    }

    pub(crate) fn open_switcher(&mut self) {
        self.switcher = Switcher::default();
        self.mode = Mode::QuickSwitcher;
    }

    /// The switcher's entries for its current query, best match first.
    pub fn switcher_items(&self) -> Vec<SwitchItem> {
        let q = &self.switcher.query;
        let mut scored: Vec<(i64, usize, SwitchItem)> = Vec::new();
        for (i, c) in self.model.conversations.iter().enumerate() {
            if let Some(s) = fuzzy::score(q, &c.title) {
                let item = SwitchItem {
                    marker: kind_marker(c.kind),
                    label: c.title.clone(),
                    target: SwitchTarget::Conversation(c.id.clone()),
                    unread: c.unread,
                };
                scored.push((s, i, item));
            }
        }
        let base = scored.len();
        let mut users: Vec<&String> = self.model.users.iter().collect();
        users.sort();
        users.dedup();
        for (i, u) in users.into_iter().enumerate() {
            if *u == self.model.me || self.model.dm_with(u).is_some() {
                continue;
            }
            if let Some(s) = fuzzy::score(q, u) {
                let item = SwitchItem {
                    marker: ' ',
                    label: format!("{u} {}", strings::SWITCHER_NEW_DM),
                    target: SwitchTarget::User(u.clone()),
                    unread: 0,
                };
                scored.push((s - 1, base + i, item));
            }
        }
        if !q.is_empty() {
            scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        scored.into_iter().map(|(_, _, item)| item).collect()
    }

    pub(super) fn switcher_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let n = self.switcher_items().len();
        let sel = &mut self.switcher.selected;
        match k.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Char('k') if ctrl => self.mode = Mode::Normal,
            KeyCode::Down | KeyCode::Tab => *sel = (*sel + 1).min(n.saturating_sub(1)),
            KeyCode::Char('n') if ctrl => *sel = (*sel + 1).min(n.saturating_sub(1)),
            KeyCode::Up | KeyCode::BackTab => *sel = sel.saturating_sub(1),
            KeyCode::Char('p') if ctrl => *sel = sel.saturating_sub(1),
            KeyCode::Backspace => {
                self.switcher.query.pop();
                self.switcher.selected = 0;
            }
            KeyCode::Char(c) if !ctrl => {
                self.switcher.query.push(c);
                self.switcher.selected = 0;
            }
            KeyCode::Enter => {
                let items = self.switcher_items();
                let Some(item) = items.get(self.switcher.selected.min(n.saturating_sub(1))) else {
                    return;
                };
                self.mode = Mode::Normal;
                match item.target.clone() {
                    SwitchTarget::Conversation(id) => self.focus(id, out),
                    SwitchTarget::User(user) => out.push(Action::OpenDm { user }),
                }
            }
            _ => {}
        }
    }

    pub(super) fn confirm_key(&mut self, k: KeyEvent, seq: u64, out: &mut Vec<Action>) {
        match k.code {
            KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                if let Some(conv) = self.focused.clone() {
                    out.push(Action::Delete { conv, seq });
                }
                self.mode = Mode::Normal;
            }
            _ => self.mode = Mode::Normal,
        }
    }

    pub(super) fn login_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let form = &mut self.login;
        let n = form.fields();
        match k.code {
            KeyCode::Char('r') if ctrl => {
                form.register = !form.register;
                form.field = form.field.min(form.fields() - 1);
            }
            KeyCode::Tab | KeyCode::Down => form.field = (form.field + 1) % n,
            KeyCode::BackTab | KeyCode::Up => form.field = (form.field + n - 1) % n,
            KeyCode::Backspace => {
                form.current().pop();
            }
            KeyCode::Char('u') if ctrl => form.current().clear(),
            KeyCode::Char(c) if !ctrl && !c.is_control() => form.current().push(c),
            KeyCode::Enter if form.field == 0 && form.password.is_empty() => form.field = 1,
            KeyCode::Enter => {
                let username = form.username.trim().to_string();
                if username.is_empty() || form.password.is_empty() {
                    self.status = Some(strings::LOGIN_EMPTY.to_string());
                    return;
                }
                let password = std::mem::take(&mut form.password);
                self.model.login_error = None;
                let invite = Some(form.invite.trim().to_string()).filter(|c| !c.is_empty());
                out.push(if form.register {
                    Action::Register {
                        username,
                        password,
                        invite,
                    }
                } else {
                    Action::Login { username, password }
                });
            }
            _ => {}
        }
    }
}
