//! Secret conversations: the devices and safety-number overlays, and the
//! verification overlay the engine's [`VerificationView`]s drive — the ones
//! started here and those another device starts, which open it by
//! themselves. Several verifications at once: the newest shows, Tab goes
//! through the others.
//!
//! The emoji are answered (`y` or `n`) only by a key typed
//! [`CONFIRM_DELAY`] after they came on screen, so keys meant for the
//! composer when the overlay opened by itself cannot answer for the user.

use super::{App, Mode};
use crate::client::Action;
use crate::client::update::VerificationView;
use crate::ui::strings;
use crossterm::event::{KeyCode, KeyEvent};
use std::time::{Duration, Instant};

/// How long the emoji are on screen before `y` or `n` answers them.
pub const CONFIRM_DELAY: Duration = Duration::from_secs(1);

/// The verification overlay's state.
#[derive(Debug, Clone, Default)]
pub struct VerifyPanel {
    /// The transaction shown (while the mode is [`Mode::Verification`]).
    pub shown: Option<String>,
    /// The mode to go back to when the overlay hides.
    back_to: Option<Mode>,
    /// The transaction whose emoji are on screen, and since when.
    emoji_since: Option<(String, Instant)>,
    /// Transactions whose emoji the user said match.
    answered: Vec<String>,
}

impl VerifyPanel {
    /// Whether the user already said the emoji of `txn` match.
    pub fn answered(&self, txn: &str) -> bool {
        self.answered.iter().any(|t| t == txn)
    }
}

fn finished(v: &VerificationView) -> bool {
    v.done || v.cancelled.is_some()
}

impl App {
    /// The devices overlay for `user`, with a fresh list asked for.
    pub(crate) fn open_devices(&mut self, user: String, out: &mut Vec<Action>) {
        self.devices_scroll = 0;
        self.ask_devices(&user, out);
        self.mode = Mode::Devices { user };
    }

    /// The safety-number overlay for `user`.
    pub(crate) fn open_safety(&mut self, user: String, out: &mut Vec<Action>) {
        if user == self.model.me {
            self.status = Some(strings::SAFETY_SELF.to_string());
            return;
        }
        self.ask_devices(&user, out);
        self.mode = Mode::Safety { user };
    }

    /// Forget what is shown of `user`'s devices (stale) and ask again.
    fn ask_devices(&mut self, user: &str, out: &mut Vec<Action>) {
        self.model.devices.remove(user);
        out.push(Action::Devices {
            user: user.to_string(),
        });
    }

    pub(super) fn devices_key(&mut self, k: KeyEvent, user: String, out: &mut Vec<Action>) {
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Down | KeyCode::Char('j') => {
                let full = ratatui::layout::Rect::new(0, 0, self.size.0, self.size.1);
                let max = crate::ui::render::secret::devices_max_scroll(self, &user, full);
                self.devices_scroll = (self.devices_scroll + 1).min(max);
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.devices_scroll = self.devices_scroll.saturating_sub(1)
            }
            KeyCode::Char('r') => self.ask_devices(&user, out),
            _ => {}
        }
    }

    pub(super) fn safety_key(&mut self, k: KeyEvent, user: String, out: &mut Vec<Action>) {
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Char('v') => {
                let known = self
                    .model
                    .devices
                    .get(&user)
                    .is_some_and(|d| d.safety_number.is_some());
                if known {
                    out.push(Action::MarkVerified { user });
                } else {
                    self.status = Some(strings::SAFETY_NOT_YET.to_string());
                }
            }
            // The engine says so when there is no change to accept.
            KeyCode::Char('a') => out.push(Action::AcceptIdentity { user }),
            KeyCode::Char('r') => self.ask_devices(&user, out),
            _ => {}
        }
    }

    /// `/verify USER [DEVICE]` starts one; `/verify` alone brings back the
    /// newest one under way (or the newest finished one).
    pub(crate) fn verify_command(
        &mut self,
        target: Option<(String, Option<String>)>,
        out: &mut Vec<Action>,
    ) {
        match target {
            Some((user, device_id)) => {
                self.status = Some(strings::verify_starting(&crate::client::text::clean(&user)));
                out.push(Action::Verify { user, device_id });
            }
            None => {
                let list = &self.model.verifications;
                let pick = list
                    .iter()
                    .rev()
                    .find(|v| !finished(v))
                    .or(list.last())
                    .map(|v| v.transaction_id.clone());
                match pick {
                    Some(txn) => self.show_verification(txn),
                    None => self.status = Some(strings::VERIFY_NONE.to_string()),
                }
            }
        }
    }

    /// An update of a verification: a new one shows at once (the newest
    /// wins); one whose emoji just came shows if the overlay is hidden.
    pub(super) fn on_verification(&mut self, view: VerificationView, now: Instant) {
        let txn = view.transaction_id.clone();
        let before = self.model.verification(&txn).map(|v| !v.emoji.is_empty());
        let emoji_came = before == Some(false) && !view.emoji.is_empty();
        self.model
            .apply(crate::client::Update::Verification(view), now);
        let hidden = self.mode != Mode::Verification;
        if before.is_none() || (emoji_came && hidden) {
            self.show_verification(txn);
        }
    }

    /// Show `txn` in the overlay, remembering where to go back to.
    fn show_verification(&mut self, txn: String) {
        if matches!(self.mode, Mode::Login) {
            return;
        }
        if self.mode != Mode::Verification {
            self.verify.back_to = Some(self.mode.clone());
            self.mode = Mode::Verification;
        }
        self.verify.shown = Some(txn);
    }

    /// Starts the confirmation delay once the shown emoji are on screen.
    pub(super) fn note_emoji_shown(&mut self, now: Instant) {
        if self.mode != Mode::Verification {
            self.verify.emoji_since = None;
            return;
        }
        let Some(txn) = self.verify.shown.clone() else {
            return;
        };
        let has_emoji = self
            .model
            .verification(&txn)
            .is_some_and(|v| !v.emoji.is_empty());
        let same = self.verify.emoji_since.as_ref().map(|(t, _)| t) == Some(&txn);
        if !has_emoji {
            self.verify.emoji_since = None;
        } else if !same {
            self.verify.emoji_since = Some((txn, now));
        }
    }

    /// The verification shown, if any.
    pub fn shown_verification(&self) -> Option<&VerificationView> {
        self.verify
            .shown
            .as_deref()
            .and_then(|t| self.model.verification(t))
    }

    pub(super) fn verification_key(&mut self, k: KeyEvent, out: &mut Vec<Action>) {
        let Some(v) = self.shown_verification().cloned() else {
            self.hide_verification();
            return;
        };
        let txn = v.transaction_id.clone();
        let asking = !v.emoji.is_empty() && !finished(&v) && !self.verify.answered(&txn);
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => self.hide_verification(),
            KeyCode::Enter if finished(&v) => self.hide_verification(),
            KeyCode::Tab => self.next_verification(&txn),
            KeyCode::Char(c @ ('y' | 'Y' | 'n' | 'N')) if asking => {
                let settled = self.verify.emoji_since.as_ref().is_some_and(|(t, since)| {
                    *t == txn && self.now.saturating_duration_since(*since) >= CONFIRM_DELAY
                });
                if !settled {
                    self.status = Some(strings::VERIFY_TOO_SOON.to_string());
                    return;
                }
                let ok = c.eq_ignore_ascii_case(&'y');
                if ok {
                    self.verify.answered.push(txn.clone());
                } else if let Some(v) = self.model.verification_mut(&txn) {
                    v.cancelled = Some(strings::VERIFY_MISMATCH.to_string());
                }
                out.push(Action::ConfirmVerification {
                    transaction_id: txn,
                    ok,
                });
            }
            _ => {}
        }
    }

    fn next_verification(&mut self, current: &str) {
        let list = &self.model.verifications;
        let at = list
            .iter()
            .position(|v| v.transaction_id == current)
            .unwrap_or(0);
        if let Some(next) = list.get((at + 1) % list.len().max(1)) {
            self.verify.shown = Some(next.transaction_id.clone());
        }
    }

    /// Hide the overlay; the finished verifications are dropped, the others
    /// kept for `/verify`.
    fn hide_verification(&mut self) {
        self.model.verifications.retain(|v| !finished(v));
        let live = |t: &String| self.model.verification(t).is_some();
        self.verify.answered.retain(live);
        self.verify.shown = None;
        self.mode = self.verify.back_to.take().unwrap_or(Mode::Normal);
    }
}
