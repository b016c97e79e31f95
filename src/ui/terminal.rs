//! Terminal setup and restore: raw mode, alternate screen, mouse capture,
//! bracketed paste and focus reporting. Restore is idempotent and also runs
//! from the panic hook and when the [`TerminalGuard`] is dropped; [`resume`]
//! enters TUI mode again after an external program had the terminal.
//!
//! Also the escape sequences ratatui's cells cannot hold: OSC 52 (copy to
//! the clipboard) and OSC 8 hyperlinks, written over cells already drawn.

use crossterm::event::{
    DisableBracketedPaste, DisableFocusChange, DisableMouseCapture, EnableBracketedPaste,
    EnableFocusChange, EnableMouseCapture,
};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{execute, queue};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::{Buffer, Cell};
use ratatui::layout::Rect;
use std::io::{self, Stdout, Write};
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
    let result = resume().and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
    match result {
        Ok(terminal) => Ok(TerminalGuard { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

/// Enters TUI mode on the current terminal (again, after [`restore`]).
/// On error the terminal is restored before returning.
pub fn resume() -> io::Result<()> {
    ACTIVE.store(true, Ordering::SeqCst);
    let result = enable_raw_mode().and_then(|()| {
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste,
            EnableFocusChange
        )
    });
    if result.is_err() {
        restore();
    }
    result
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
        crate::private::dir(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// OSC 52: asks the terminal to put `text` on the clipboard.
pub fn osc52(text: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    format!("\x1b]52;c;{b64}\x07")
}

/// Whether to write hyperlinks: the setting, unless `$TERM` names a
/// terminal known to print OSC 8 as garbage.
pub fn hyperlinks_wanted(setting: bool, term: Option<&str>) -> bool {
    setting && !matches!(term, Some("dumb" | "linux"))
}

/// `url` made safe for an OSC 8 sequence: only http, https and mailto;
/// refused when it holds control characters (ESC, BEL, newlines); bytes
/// outside printable ASCII percent-encoded.
pub fn osc8_url(url: &str) -> Option<String> {
    if !crate::ui::render::markdown::linkable(url) || url.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// A link to draw: its cells (one row), target, and the cells' content.
pub type LinkCells = (Rect, String, Vec<Cell>);

/// Rewrites each link's cells wrapped in an OSC 8 hyperlink, in their own
/// styles, then puts the cursor back where it was.
pub fn write_links(w: &mut impl Write, links: &[LinkCells]) -> io::Result<()> {
    use crossterm::cursor::{MoveTo, RestorePosition, SavePosition};
    use crossterm::style::{Print, PrintStyledContent, StyledContent};
    use ratatui::backend::IntoCrossterm;
    queue!(w, SavePosition)?;
    for (rect, url, cells) in links {
        let Some(url) = osc8_url(url) else {
            continue;
        };
        queue!(
            w,
            MoveTo(rect.x, rect.y),
            Print(format!("\x1b]8;;{url}\x1b\\"))
        )?;
        let mut skip = 0;
        for cell in cells {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let symbol = cell.symbol();
            skip = unicode_width::UnicodeWidthStr::width(symbol).saturating_sub(1);
            let style = cell.style().into_crossterm();
            queue!(w, PrintStyledContent(StyledContent::new(style, symbol)))?;
        }
        queue!(w, Print("\x1b]8;;\x1b\\"))?;
    }
    queue!(w, RestorePosition)?;
    w.flush()
}

/// The cells of `rect` in `buf` (clipped to the buffer).
pub fn cells(buf: &Buffer, rect: Rect) -> Vec<Cell> {
    let rect = rect.intersection(buf.area);
    rect.positions()
        .filter_map(|p| buf.cell(p).cloned())
        .collect()
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
    fn osc52_is_base64_between_osc_and_bel() {
        assert_eq!(osc52("hi\n"), "\x1b]52;c;aGkK\x07");
        assert_eq!(osc52(""), "\x1b]52;c;\x07");
        assert_eq!(osc52("日本"), "\x1b]52;c;5pel5pys\x07");
    }

    #[test]
    fn osc8_urls_are_checked_and_escaped() {
        assert_eq!(
            osc8_url("https://example.org/a?b=c"),
            Some("https://example.org/a?b=c".into())
        );
        assert_eq!(osc8_url("MAILTO:x@y.z"), Some("MAILTO:x@y.z".into()));
        assert_eq!(
            osc8_url("https://例え.jp/a b"),
            Some("https://%E4%BE%8B%E3%81%88.jp/a%20b".into())
        );
        assert_eq!(osc8_url("https://x.org/\x1b]8;;evil\x07"), None);
        assert_eq!(osc8_url("https://x.org/\u{9b}2J"), None);
        assert_eq!(osc8_url("javascript:alert(1)"), None);
        assert_eq!(osc8_url("file:///etc/passwd"), None);
        assert_eq!(osc8_url("https://"), None);
    }

    #[test]
    fn hyperlinks_off_for_dumb_terminals() {
        assert!(hyperlinks_wanted(true, Some("xterm-256color")));
        assert!(hyperlinks_wanted(true, None));
        assert!(!hyperlinks_wanted(true, Some("dumb")));
        assert!(!hyperlinks_wanted(true, Some("linux")));
        assert!(!hyperlinks_wanted(false, Some("xterm")));
    }

    #[test]
    fn links_are_rewritten_in_their_styles() {
        use ratatui::style::{Color, Style};
        let mut buf = Buffer::empty(Rect::new(0, 0, 10, 1));
        buf.set_string(0, 0, "a 日x", Style::default().fg(Color::Red));
        let rect = Rect::new(2, 0, 3, 1);
        let mut out = Vec::new();
        let links = [(rect, "https://x.org".to_string(), cells(&buf, rect))];
        write_links(&mut out, &links).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("\x1b]8;;https://x.org\x1b\\"), "{text:?}");
        assert!(text.ends_with("\x1b]8;;\x1b\\\x1b8"), "{text:?}");
        assert_eq!(text.matches('日').count(), 1);
        assert!(text.contains('x'));
        let evil = [(rect, "https://x.org/\x07".to_string(), Vec::new())];
        let mut out = Vec::new();
        write_links(&mut out, &evil).expect("write");
        assert!(!String::from_utf8_lossy(&out).contains("]8;"));
    }

    #[test]
    fn restore_without_setup_is_a_no_op() {
        restore();
        restore();
        assert!(!ACTIVE.load(Ordering::SeqCst));
    }
}
