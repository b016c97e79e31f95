//! Terminal setup and restore: raw mode, alternate screen, mouse capture,
//! bracketed paste and focus reporting. Restore is idempotent and also runs
//! from the panic hook and when the [`TerminalGuard`] is dropped.

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
use std::path::PathBuf;
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

/// Installs the program's panic hook (once): restore the terminal, append
/// the details with a backtrace to `log`, print one line saying where they
/// are, and exit with status 101 — a half-dead client must not linger on a
/// restored terminal, and a raw panic dump is no message for a user.
pub fn install_panic_hook(log: Option<PathBuf>) {
    HOOK.call_once(move || {
        std::panic::set_hook(Box::new(move |info| {
            restore();
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            let detail = format!("{info}\n{}\n", std::backtrace::Backtrace::force_capture());
            let written = log.as_ref().filter(|p| append(p, &detail).is_ok());
            match written {
                Some(p) => eprintln!("chat: internal error ({what}); details in {}", p.display()),
                None => eprintln!("chat: internal error ({what})"),
            }
            std::process::exit(101);
        }));
    });
}

fn append(path: &PathBuf, text: &str) -> io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
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
