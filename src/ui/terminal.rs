//! Terminal setup and restore: raw mode, alternate screen, mouse capture,
//! bracketed paste and focus reporting. Restore is idempotent and also runs
//! from a panic hook (before the panic message is printed) and when the
//! [`TerminalGuard`] is dropped.

use crossterm::event::{
    DisableBracketedPaste, DisableFocusChange, DisableMouseCapture, EnableBracketedPaste,
    EnableFocusChange, EnableMouseCapture,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the terminal is currently in TUI mode.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// Owns the TUI terminal; restores the terminal when dropped.
pub struct TerminalGuard {
    pub terminal: Tui,
}

/// Enters TUI mode. On error the terminal is restored before returning.
pub fn setup() -> io::Result<TerminalGuard> {
    install_panic_hook();
    ACTIVE.store(true, Ordering::SeqCst);
    let result = (|| {
        enable_raw_mode()?;
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste,
            EnableFocusChange
        )?;
        Terminal::new(CrosstermBackend::new(io::stdout()))
    })();
    match result {
        Ok(terminal) => Ok(TerminalGuard { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

/// Leaves TUI mode. Safe to call any number of times, from any thread;
/// only the first call after [`setup`] does anything. Errors are ignored:
/// there is nothing better to do while tearing down.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = execute!(
        io::stdout(),
        DisableFocusChange,
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// Chains a panic hook that restores the terminal first, so the panic
/// message lands on a usable screen. Installed once.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_without_setup_is_a_no_op() {
        restore();
        restore();
        assert!(!ACTIVE.load(Ordering::SeqCst));
    }
}
