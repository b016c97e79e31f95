//! The App: all UI state plus the [`Model`], and the one place it changes.
//! `handle_event` turns a [`UiEvent`] into state changes and the
//! [`Action`]s the engine should perform; rendering reads the App and never
//! mutates it.
//!
//! Sub-modules follow the modes: `normal` (navigation and message actions),
//! `insert` (composer, sending, typing signals), `complete` (Tab
//! completion), `exec` (slash commands), `overlays` (help, quick switcher,
//! delete confirmation, login), `sessions` (my device sessions), `view`
//! (scrolling, read pointers, scrollback),
//! `markup` (raw or rendered bodies, copying code, the external editor),
//! `search` (the search prompt, its results and the jump to a hit).
//! `unread` (unread jumps and filter, the "new messages" line).
//! `secret` (devices, safety numbers and verifications).

mod complete;
mod exec;
mod files;
mod insert;
mod markup;
mod normal;
mod overlays;
mod search;
mod secret;
mod sessions;
mod unread;
mod view;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_accounts;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_search;
#[cfg(test)]
mod tests_secret;
#[cfg(test)]
mod tests_unread;

pub use complete::Completion;
pub use markup::{Markup, TerminalRequest};
pub use overlays::{LoginForm, SwitchItem, SwitchTarget, Switcher, kind_marker};
pub use search::{SearchPanel, ServerState};
pub use secret::{CONFIRM_DELAY, VerifyPanel};
pub(crate) use view::row_seq;

use super::event::UiEvent;
use super::keys::KeyMap;
use super::model::Model;
use super::notify::{Notification, Notifier, NotifyContext};
use super::theme::Theme;
use crate::client::clock::TimeZone;
use crate::client::view::MessageRow;
use crate::client::{Action, Update};
use crate::ui::strings;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};
use std::collections::HashMap;
use std::time::Instant;

/// Lines scrolled per mouse wheel step.
const WHEEL_LINES: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Navigating: keys go through the [`KeyMap`].
    Normal,
    /// Writing in the composer.
    Insert,
    Help,
    QuickSwitcher,
    /// Waiting for y/n before deleting message `seq`.
    ConfirmDelete {
        seq: u64,
    },
    /// Waiting for y/n before uploading a pasted path (`text` as pasted).
    ConfirmUpload {
        path: std::path::PathBuf,
        text: String,
    },
    Login,
    /// This account's device sessions.
    Sessions,
    /// The search prompt and its results.
    Search,
    /// A user's devices and the trust in their identity key.
    Devices {
        user: String,
    },
    /// The safety number with a user.
    Safety {
        user: String,
    },
    /// A verification's emoji and progress ([`App::verify`]).
    Verification,
}

/// Debounce state of my typing indicator.
#[derive(Debug, Default)]
struct TypingOut {
    /// Conversation where `start` was last sent and no `stop` since.
    conv: Option<String>,
    sent_at: Option<Instant>,
    last_key: Option<Instant>,
}

pub struct App {
    pub model: Model,
    pub keymap: KeyMap,
    pub theme: Theme,
    /// Zone for message times (tests use UTC).
    pub tz: TimeZone,
    pub mode: Mode,
    /// The conversation shown on the right.
    pub focused: Option<String>,
    /// Lines scrolled up from the bottom of the message view.
    pub scroll: usize,
    /// Selected message, by seq.
    pub selected: Option<u64>,
    pub composer: super::composer::Composer,
    /// The composer will send a reply to this seq.
    pub reply_to: Option<u64>,
    /// The composer holds an edit of this seq.
    pub editing: Option<u64>,
    pub completion: Option<Completion>,
    /// A one-line message for the status line (cleared by the next key).
    pub status: Option<String>,
    pub switcher: Switcher,
    pub search: SearchPanel,
    pub login: LoginForm,
    /// Selected row of the sessions overlay.
    pub sessions_selected: usize,
    /// Lines scrolled down in the help overlay.
    pub help_scroll: usize,
    /// Lines scrolled down in the devices overlay.
    pub devices_scroll: usize,
    pub verify: VerifyPanel,
    /// Terminal size in cells, for paging and scrollback decisions.
    pub size: (u16, u16),
    pub terminal_focused: bool,
    /// Time of the event being handled; rendering uses it for expiry.
    pub now: Instant,
    /// The wall clock at that event, for "5 min ago".
    pub wall: crate::proto::Millis,
    pub notifier: Notifier,
    /// Notifications decided but not yet shown; the UI loop drains them.
    pub notifications: Vec<Notification>,
    pub quit: bool,
    pub markup: Markup,
    /// Terminal work (clipboard, editor) for the UI loop to drain.
    pub terminal_requests: Vec<TerminalRequest>,
    /// Inline images ready to draw, and decodes for the UI loop to run.
    pub images: super::images::Images,
    typing: TypingOut,
    /// Highest seq I asked to mark read, per conversation.
    marked: HashMap<String, u64>,
    /// The last `LoadOlder` asked for, to never ask twice.
    older_requested: Option<(String, u64)>,
    /// A conversation the engine created or joined for the user; focused
    /// once it is in the list.
    focus_request: Option<String>,
    /// The list shows only conversations with unread messages (and the
    /// focused one).
    pub unread_only: bool,
    /// The first key of a two-key sequence, waiting for the second.
    pending_key: Option<super::keys::Chord>,
    /// A search hit being opened: selected once its row is loaded.
    jump_target: Option<(String, u64)>,
    /// The focused conversation and my read pointer there when it was
    /// opened: where the "new messages" line goes.
    opened_read: Option<(String, u64)>,
}

impl App {
    pub fn new(model: Model, now: Instant) -> App {
        App {
            model,
            keymap: KeyMap::default(),
            theme: Theme::default(),
            tz: TimeZone::Local,
            mode: Mode::Normal,
            focused: None,
            scroll: 0,
            selected: None,
            composer: Default::default(),
            reply_to: None,
            editing: None,
            completion: None,
            status: None,
            switcher: Switcher::default(),
            search: SearchPanel::default(),
            login: LoginForm::default(),
            sessions_selected: 0,
            help_scroll: 0,
            devices_scroll: 0,
            verify: VerifyPanel::default(),
            size: (80, 24),
            terminal_focused: true,
            now,
            wall: crate::proto::now_millis(),
            notifier: Notifier::new(true),
            notifications: Vec::new(),
            quit: false,
            markup: Markup::default(),
            terminal_requests: Vec::new(),
            images: Default::default(),
            typing: TypingOut::default(),
            marked: HashMap::new(),
            older_requested: None,
            focus_request: None,
            unread_only: false,
            pending_key: None,
            jump_target: None,
            opened_read: None,
        }
    }

    /// Applies one event; returns what the engine should do.
    pub fn handle_event(&mut self, ev: UiEvent, now: Instant) -> Vec<Action> {
        self.now = now;
        self.wall = crate::proto::now_millis();
        let mut out = Vec::new();
        match ev {
            UiEvent::Tick => self.on_tick(now, &mut out),
            UiEvent::Engine(batch) => self.on_engine(batch, now),
            UiEvent::OpenConversation(conv) => {
                if self.model.conversation(&conv).is_some() {
                    self.notifier.clear(&conv);
                    self.focus(conv, &mut out);
                }
            }
            UiEvent::Term(ev) => self.on_term(ev, &mut out),
            UiEvent::Image(done) => self.images.insert(done),
            UiEvent::Opened(Err(why)) => self.status = Some(strings::open_failed(&why)),
            UiEvent::Opened(Ok(())) => {}
        }
        self.after_update(&mut out);
        out
    }

    /// The engine's updates: state goes to the model; incoming messages go
    /// to the notifier; a focus request waits until its conversation is
    /// listed.
    fn on_engine(&mut self, batch: Vec<Update>, now: Instant) {
        for update in batch {
            match update {
                Update::Incoming(list) => {
                    let ctx = self.notify_context();
                    for msg in &list {
                        if let Some(n) = self.notifier.on_message(msg, &ctx, now) {
                            self.notifications.push(n);
                        }
                    }
                }
                Update::Focus(conv) => self.focus_request = Some(conv),
                Update::Transfer(t) => self.on_transfer(t),
                Update::FileReady {
                    digest,
                    path,
                    purpose,
                } => self.on_file_ready(&digest, path, purpose),
                Update::Messages { .. } => {
                    self.model.apply(update, now);
                    self.queue_previews();
                }
                Update::SearchHits { id, source, hits } => self.search.add(id, source, hits),
                Update::SearchEnded { id, error } => self.search.ended(id, error),
                Update::Verification(view) => self.on_verification(view, now),
                Update::AuthFailed { .. } => {
                    // Back at the login screen after a session ended: the
                    // same account, the password to type.
                    if self.login.username.is_empty() && !self.model.me.is_empty() {
                        self.login.username = self.model.me.clone();
                        self.login.field = 1;
                    }
                    self.model.apply(update, now);
                }
                other => self.model.apply(other, now),
            }
        }
    }

    fn on_term(&mut self, ev: Event, out: &mut Vec<Action>) {
        match ev {
            Event::Key(k) if k.kind != KeyEventKind::Release => self.on_key(k, out),
            Event::Key(_) => {}
            Event::Paste(text) => self.on_paste(&text, out),
            Event::Mouse(m) => match m.kind {
                MouseEventKind::ScrollUp => self.scroll_lines(WHEEL_LINES as isize),
                MouseEventKind::ScrollDown => self.scroll_lines(-(WHEEL_LINES as isize)),
                _ => {}
            },
            Event::Resize(w, h) => self.size = (w, h),
            Event::FocusGained => self.terminal_focused = true,
            Event::FocusLost => self.terminal_focused = false,
        }
    }

    fn on_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            self.request_quit(out);
            return;
        }
        self.status = None;
        if self.mode != Mode::Normal || k.code == KeyCode::Esc {
            self.pending_key = None;
        }
        match self.mode.clone() {
            Mode::Normal => self.normal_key(k, out),
            Mode::Insert => self.insert_key(k, out),
            Mode::Help => self.help_key(k),
            Mode::QuickSwitcher => self.switcher_key(k, out),
            Mode::ConfirmDelete { seq } => self.confirm_key(k, seq, out),
            Mode::ConfirmUpload { path, text } => self.confirm_upload_key(k, path, text, out),
            Mode::Login => self.login_key(k, out),
            Mode::Sessions => self.sessions_key(k, out),
            Mode::Search => self.search_key(k, out),
            Mode::Devices { user } => self.devices_key(k, user, out),
            Mode::Safety { user } => self.safety_key(k, user, out),
            Mode::Verification => self.verification_key(k, out),
        }
    }

    fn on_paste(&mut self, text: &str, out: &mut Vec<Action>) {
        if matches!(self.mode, Mode::Insert | Mode::Normal) && self.offer_upload(text) {
            return;
        }
        match self.mode {
            Mode::Insert => self.insert_paste(text, out),
            Mode::Normal if self.focused.is_some() => {
                self.mode = Mode::Insert;
                self.insert_paste(text, out);
            }
            Mode::QuickSwitcher => {
                self.switcher
                    .query
                    .push_str(text.lines().next().unwrap_or(""));
                self.switcher.selected = 0;
            }
            Mode::Login => self.login.paste(text),
            Mode::Search => self.search.edit(text.lines().next().unwrap_or("")),
            _ => {}
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.model.expire_typing(now);
        self.typing_idle_check(now, out);
        let due = self.notifier.flush(now);
        self.notifications.extend(due);
    }

    pub(crate) fn request_quit(&mut self, out: &mut Vec<Action>) {
        self.stop_typing(out);
        self.quit = true;
        out.push(Action::Quit);
    }

    /// Invariants re-established after every event: login mode, a valid
    /// focused conversation, scroll bounds, read pointer and scrollback.
    fn after_update(&mut self, out: &mut Vec<Action>) {
        if self.model.needs_login && self.mode != Mode::Login {
            self.mode = Mode::Login;
        } else if !self.model.needs_login && self.mode == Mode::Login {
            self.mode = Mode::Normal;
        }
        if let Some(id) = self.focus_request.clone()
            && self.model.conversation(&id).is_some()
        {
            self.focus_request = None;
            self.focus(id, out);
        }
        let valid = self
            .focused
            .as_ref()
            .is_some_and(|f| self.model.conversation(f).is_some());
        if !valid {
            match self.model.conversations.first().map(|c| c.id.clone()) {
                Some(id) => self.focus(id, out),
                None => self.focused = None,
            }
        }
        if self.mode == Mode::Login {
            return;
        }
        self.note_emoji_shown(self.now);
        self.land_jump();
        self.clamp_view();
        self.check_scrollback(out);
        self.check_read(out);
    }

    /// Where the user's attention is, for the notifier.
    pub fn notify_context(&self) -> NotifyContext {
        NotifyContext {
            me: self.model.me.clone(),
            focused_conv: self.focused.clone(),
            terminal_focused: self.terminal_focused,
        }
    }

    /// Switches the right pane to `conv`.
    pub(crate) fn focus(&mut self, conv: String, out: &mut Vec<Action>) {
        if self.focused.as_deref() == Some(conv.as_str()) {
            return;
        }
        self.stop_typing(out);
        self.scroll = 0;
        self.selected = None;
        self.reply_to = None;
        if self.editing.take().is_some() {
            self.composer.take();
        }
        self.notifier.clear(&conv);
        self.remember_read_pointer(&conv);
        out.push(Action::OpenConversation { conv: conv.clone() });
        self.focused = Some(conv);
    }

    /// Moves `delta` conversations down the list as shown (wrapping).
    pub(crate) fn cycle_conversation(&mut self, delta: isize, out: &mut Vec<Action>) {
        let listed = self.listed_conversations();
        let n = listed.len();
        if n == 0 {
            return;
        }
        let cur = self
            .focused
            .as_ref()
            .and_then(|f| listed.iter().position(|c| &c.id == f))
            .unwrap_or(0);
        let next = (cur as isize + delta).rem_euclid(n as isize) as usize;
        let id = listed[next].id.clone();
        self.focus(id, out);
    }

    /// The focused conversation's rows.
    pub fn rows(&self) -> &[MessageRow] {
        match &self.focused {
            Some(c) => self.model.rows(c),
            None => &[],
        }
    }
}
