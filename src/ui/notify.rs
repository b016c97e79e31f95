//! Notifications: [`Notifier`] decides, purely, whether a new message
//! deserves one; [`super::notify_sink::NotifySink`] shows it.
//!
//! Policy: never for my own messages; always for mentions of me, even in a
//! muted conversation (mute silences chatter, not people addressing me);
//! otherwise only for conversations not on screen, where "on screen" means
//! focused in the UI while the terminal has focus. Bursts are coalesced: at
//! most one notification per conversation per [`COALESCE`] window; messages
//! held back are counted and reported with the next one or by [`Notifier::flush`].

use super::strings;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const COALESCE: Duration = Duration::from_secs(5);

pub use crate::client::view::Incoming;

/// Where the user's attention is.
#[derive(Debug, Clone, Default)]
pub struct NotifyContext {
    pub me: String,
    pub focused_conv: Option<String>,
    pub terminal_focused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub conv: String,
    pub title: String,
    pub body: String,
    /// How many messages this notification stands for.
    pub count: u32,
}

#[derive(Debug, Default)]
struct ConvState {
    last_shown: Option<Instant>,
    held: u32,
    title: String,
}

#[derive(Debug, Default)]
pub struct Notifier {
    enabled: bool,
    /// Only mentions of me notify.
    pub mentions_only: bool,
    convs: HashMap<String, ConvState>,
}

impl Notifier {
    pub fn new(enabled: bool) -> Notifier {
        Notifier {
            enabled,
            mentions_only: false,
            convs: HashMap::new(),
        }
    }

    /// Whether `msg` is worth telling the user about at all.
    pub fn wants(&self, msg: &Incoming, ctx: &NotifyContext) -> bool {
        if !self.enabled || msg.sender == ctx.me {
            return false;
        }
        if msg.mentions_me {
            return true;
        }
        if self.mentions_only {
            return false;
        }
        let on_screen = ctx.terminal_focused && ctx.focused_conv.as_deref() == Some(&msg.conv);
        !msg.muted && !on_screen
    }

    /// Decides on a new message; `Some` when a notification should show now.
    pub fn on_message(
        &mut self,
        msg: &Incoming,
        ctx: &NotifyContext,
        now: Instant,
    ) -> Option<Notification> {
        if !self.wants(msg, ctx) {
            return None;
        }
        let state = self.convs.entry(msg.conv.clone()).or_default();
        state.title = msg.conv_title.clone();
        if state
            .last_shown
            .is_some_and(|t| now.saturating_duration_since(t) < COALESCE)
        {
            state.held += 1;
            return None;
        }
        let count = state.held + 1;
        state.held = 0;
        state.last_shown = Some(now);
        let mut body = msg.body.lines().next().unwrap_or("").to_string();
        if count > 1 {
            body = format!("{body}\n{}", strings::notification_more(count - 1));
        }
        Some(Notification {
            conv: msg.conv.clone(),
            title: strings::notification_title(&msg.sender, &msg.conv_title, msg.is_dm),
            body,
            count,
        })
    }

    /// Summaries for conversations whose held-back messages have waited out
    /// the window. Call on every tick.
    pub fn flush(&mut self, now: Instant) -> Vec<Notification> {
        let mut out = Vec::new();
        for (conv, state) in &mut self.convs {
            let due = state
                .last_shown
                .is_none_or(|t| now.saturating_duration_since(t) >= COALESCE);
            if state.held > 0 && due {
                out.push(Notification {
                    conv: conv.clone(),
                    title: state.title.clone(),
                    body: strings::notification_summary(state.held, &state.title),
                    count: state.held,
                });
                state.held = 0;
                state.last_shown = Some(now);
            }
        }
        out.sort_by(|a, b| a.conv.cmp(&b.conv));
        out
    }

    /// Forgets a conversation's burst (e.g. the user opened it).
    pub fn clear(&mut self, conv: &str) {
        if let Some(s) = self.convs.get_mut(conv) {
            s.held = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: &str, sender: &str) -> Incoming {
        Incoming {
            conv: conv.into(),
            conv_title: format!("#{conv}"),
            is_dm: false,
            sender: sender.into(),
            body: "hello\nsecond line".into(),
            mentions_me: false,
            muted: false,
        }
    }

    fn ctx(focused: Option<&str>, terminal_focused: bool) -> NotifyContext {
        NotifyContext {
            me: "me".into(),
            focused_conv: focused.map(str::to_string),
            terminal_focused,
        }
    }

    #[test]
    fn policy() {
        let n = Notifier::new(true);
        let on = ctx(Some("a"), true);
        assert!(!n.wants(&msg("a", "bob"), &on), "on screen");
        assert!(n.wants(&msg("b", "bob"), &on), "other conversation");
        assert!(
            n.wants(&msg("a", "bob"), &ctx(Some("a"), false)),
            "unfocused terminal"
        );
        assert!(!n.wants(&msg("b", "me"), &on), "my own");
        let mut muted = msg("b", "bob");
        muted.muted = true;
        assert!(!n.wants(&muted, &on));
        muted.mentions_me = true;
        assert!(n.wants(&muted, &on), "mentions pass mute");
        let mut mention_here = msg("a", "bob");
        mention_here.mentions_me = true;
        assert!(n.wants(&mention_here, &on));
        assert!(!Notifier::new(false).wants(&msg("b", "bob"), &on));
        let mut only = Notifier::new(true);
        only.mentions_only = true;
        assert!(!only.wants(&msg("b", "bob"), &on), "mentions only");
        assert!(only.wants(&mention_here, &on));
    }

    #[test]
    fn bursts_are_coalesced_per_conversation() {
        let t0 = Instant::now();
        let mut n = Notifier::new(true);
        let c = ctx(None, false);
        let first = n.on_message(&msg("a", "bob"), &c, t0).expect("first");
        assert_eq!((first.count, first.body.as_str()), (1, "hello"));
        assert_eq!(first.title, "bob in #a");
        assert!(
            n.on_message(&msg("a", "bob"), &c, t0 + Duration::from_secs(1))
                .is_none()
        );
        assert!(
            n.on_message(&msg("a", "carol"), &c, t0 + Duration::from_secs(2))
                .is_none()
        );
        assert!(
            n.on_message(&msg("b", "bob"), &c, t0 + Duration::from_secs(2))
                .is_some()
        );
        assert!(n.flush(t0 + Duration::from_secs(4)).is_empty());
        let later = n.flush(t0 + Duration::from_secs(5));
        assert_eq!(later.len(), 1);
        assert_eq!((later[0].conv.as_str(), later[0].count), ("a", 2));
        assert!(n.flush(t0 + Duration::from_secs(20)).is_empty());
        let next = n.on_message(&msg("a", "bob"), &c, t0 + Duration::from_secs(6));
        assert!(next.is_none(), "window restarts at the summary");
        let after = n.on_message(&msg("a", "bob"), &c, t0 + Duration::from_secs(11));
        let after = after.expect("new window");
        assert_eq!(after.count, 2);
        assert!(after.body.ends_with("and 1 more"));
    }
}
