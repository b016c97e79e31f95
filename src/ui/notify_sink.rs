//! Showing notifications where the user is: the desktop's notification
//! service (through `notify-rust`, off the UI thread, with an "open" action
//! that focuses the conversation where the service supports actions), the
//! terminal itself (OSC 9 / OSC 777, for SSH sessions and desktops without
//! a service), and the bell. Everything shown comes from other users, so
//! control characters are stripped and the desktop body's markup escaped.
//! A missing service is never an error: the desktop part goes quiet for
//! good after its first failure.

use super::event::UiEvent;
use super::notify::Notification;
use super::strings;
use crate::client::config::TerminalNotify;
use crate::client::text::clean;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Desktop notifications being shown or waited on at once; past that, new
/// ones are dropped (a hung service never piles up threads).
const MAX_IN_FLIGHT: usize = 4;
/// Longest text put into a terminal notification.
const TERMINAL_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkConfig {
    /// Desktop notifications at all.
    pub desktop: bool,
    /// Ring the terminal bell with each notification.
    pub bell: bool,
    pub terminal: TerminalNotify,
}

/// Shows notifications. Cheap to clone; safe to call from the UI task.
#[derive(Debug, Clone)]
pub struct NotifySink {
    desktop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    bell: bool,
    /// The escape to write to the terminal, if any.
    terminal: Option<TerminalNotify>,
    /// Where a clicked notification asks to open its conversation.
    open: Option<mpsc::Sender<UiEvent>>,
}

/// Whether a notification service can plausibly exist here.
fn service_available() -> bool {
    cfg!(any(target_os = "macos", windows))
        || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty())
}

/// The terminal escape to use: `Auto` picks one only when no desktop
/// service is there, and never for terminals that are known not to parse
/// them.
fn terminal_mode(mode: TerminalNotify, desktop: bool, term: &str) -> Option<TerminalNotify> {
    let plain = term.is_empty() || term == "dumb" || term == "linux";
    match mode {
        TerminalNotify::Off => None,
        TerminalNotify::Osc9 | TerminalNotify::Osc777 => Some(mode),
        TerminalNotify::Auto if desktop || plain => None,
        TerminalNotify::Auto if term.starts_with("foot") || term.contains("rxvt") => {
            Some(TerminalNotify::Osc777)
        }
        TerminalNotify::Auto => Some(TerminalNotify::Osc9),
    }
}

/// Text fit for an OSC string: no control characters, no `;` where it
/// would split fields, cut to [`TERMINAL_CHARS`].
fn osc_text(text: &str, keep_semicolons: bool) -> String {
    let line = clean(text.lines().next().unwrap_or(""));
    let line: String = if keep_semicolons {
        line
    } else {
        line.replace(';', ",")
    };
    line.chars().take(TERMINAL_CHARS).collect()
}

/// The escape sequence that carries `n`; inside tmux it is wrapped in a
/// passthrough so it reaches the outer terminal.
pub fn terminal_escape(mode: TerminalNotify, n: &Notification, tmux: bool) -> Option<String> {
    let seq = match mode {
        TerminalNotify::Osc9 => format!(
            "\x1b]9;{}: {}\x07",
            osc_text(&n.title, true),
            osc_text(&n.body, true)
        ),
        TerminalNotify::Osc777 => format!(
            "\x1b]777;notify;{};{}\x07",
            osc_text(&n.title, false),
            osc_text(&n.body, false)
        ),
        TerminalNotify::Auto | TerminalNotify::Off => return None,
    };
    Some(if tmux {
        format!("\x1bPtmux;{}\x1b\\", seq.replace('\x1b', "\x1b\x1b"))
    } else {
        seq
    })
}

/// A notification body for a service that reads a subset of HTML.
pub fn markup_escaped(text: &str) -> String {
    clean(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl NotifySink {
    /// `open` receives [`UiEvent::OpenConversation`] when the user clicks a
    /// notification.
    pub fn new(cfg: SinkConfig, open: Option<mpsc::Sender<UiEvent>>) -> NotifySink {
        let desktop = cfg.desktop && service_available();
        let term = std::env::var("TERM").unwrap_or_default();
        NotifySink {
            desktop: Arc::new(AtomicBool::new(desktop)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            bell: cfg.bell,
            terminal: terminal_mode(cfg.terminal, desktop, &term),
            open,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.desktop.load(Ordering::Relaxed)
    }

    /// Rings the bell and writes the terminal escape if configured, and
    /// hands the desktop notification to a thread of its own.
    pub fn show(&self, n: &Notification) {
        let mut out = Vec::new();
        if let Some(mode) = self.terminal {
            let tmux = std::env::var_os("TMUX").is_some();
            out.extend(terminal_escape(mode, n, tmux).unwrap_or_default().bytes());
        }
        if self.bell {
            out.push(0x07);
        }
        if !out.is_empty() {
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
        }
        if self.is_enabled() {
            self.show_desktop(n);
        }
    }

    fn show_desktop(&self, n: &Notification) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let (enabled, in_flight) = (self.desktop.clone(), self.in_flight.clone());
        let (title, body, conv) = (clean(&n.title), markup_escaped(&n.body), n.conv.clone());
        let open = self.open.clone();
        // A plain thread, not the runtime's blocking pool: a notification
        // waiting for a click must never hold up the program's exit.
        let spawned = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                let mut note = notify_rust::Notification::new();
                note.appname(strings::APP_NAME).summary(&title).body(&body);
                if open.is_some() && supports_actions() {
                    note.action("default", strings::NOTIFY_OPEN);
                }
                match note.show() {
                    Ok(handle) => wait_for_click(handle, open, conv),
                    Err(_) => enabled.store(false, Ordering::Relaxed),
                }
                in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Whether the notification server takes actions (asked once).
fn supports_actions() -> bool {
    static ACTIONS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ACTIONS.get_or_init(|| {
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            notify_rust::get_capabilities()
                .map(|caps| caps.iter().any(|c| c == "actions"))
                .unwrap_or(false)
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        {
            false
        }
    })
}

#[cfg(all(unix, not(target_os = "macos")))]
fn wait_for_click(
    handle: notify_rust::NotificationHandle,
    open: Option<mpsc::Sender<UiEvent>>,
    conv: String,
) {
    let Some(open) = open else {
        return;
    };
    if !supports_actions() {
        return;
    }
    handle.wait_for_action(|action| {
        if action == "default" {
            let _ = open.blocking_send(UiEvent::OpenConversation(conv));
        }
    });
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn wait_for_click(
    _handle: notify_rust::NotificationHandle,
    _open: Option<mpsc::Sender<UiEvent>>,
    _conv: String,
) {
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(title: &str, body: &str) -> Notification {
        Notification {
            conv: "c".into(),
            title: title.into(),
            body: body.into(),
            count: 1,
        }
    }

    #[test]
    fn auto_uses_the_terminal_only_without_a_desktop_service() {
        use TerminalNotify::*;
        assert_eq!(terminal_mode(Auto, true, "xterm-256color"), None);
        assert_eq!(terminal_mode(Auto, false, "xterm-256color"), Some(Osc9));
        assert_eq!(terminal_mode(Auto, false, "foot"), Some(Osc777));
        assert_eq!(terminal_mode(Auto, false, "rxvt-unicode"), Some(Osc777));
        assert_eq!(terminal_mode(Auto, false, "linux"), None);
        assert_eq!(terminal_mode(Auto, false, "dumb"), None);
        assert_eq!(terminal_mode(Osc9, true, "linux"), Some(Osc9));
        assert_eq!(terminal_mode(Off, false, "foot"), None);
    }

    #[test]
    fn terminal_escapes_carry_no_control_characters_of_others() {
        let n = note(
            "bob\x1b[2J in #a;b",
            "hi\x07\x1b]52;c;aGk=\x07 there\nsecond",
        );
        let osc9 = terminal_escape(TerminalNotify::Osc9, &n, false).unwrap();
        assert!(osc9.starts_with("\x1b]9;") && osc9.ends_with('\x07'));
        let inner = &osc9[4..osc9.len() - 1];
        assert!(!inner.chars().any(char::is_control), "{inner:?}");
        assert!(!inner.contains("second"));
        let osc777 = terminal_escape(TerminalNotify::Osc777, &n, false).unwrap();
        let inner = &osc777[2..osc777.len() - 1];
        assert_eq!(inner.split(';').count(), 4, "{inner:?}: every ';' replaced");
        assert!(!inner.chars().any(char::is_control));
        let wrapped = terminal_escape(TerminalNotify::Osc9, &n, true).unwrap();
        assert!(wrapped.starts_with("\x1bPtmux;\x1b\x1b]9;") && wrapped.ends_with("\x1b\\"));
        assert_eq!(terminal_escape(TerminalNotify::Off, &n, false), None);
    }

    #[test]
    fn desktop_bodies_are_escaped_for_markup() {
        assert_eq!(
            markup_escaped("<b>x</b> & \x1b[31m"),
            "&lt;b&gt;x&lt;/b&gt; &amp; \u{fffd}[31m"
        );
    }

    #[test]
    fn a_sink_without_a_service_is_silent() {
        let off = NotifySink::new(
            SinkConfig {
                desktop: false,
                bell: false,
                terminal: TerminalNotify::Off,
            },
            None,
        );
        assert!(!off.is_enabled());
        off.show(&note("t", "b"));
    }
}
