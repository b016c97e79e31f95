//! The UI loop, generic over the backend and fed by one channel of
//! [`UiEvent`]s: draw, wait for an event, apply it (and any others already
//! queued), hand the resulting actions to the engine, show notifications,
//! and do the terminal work the App asked for (OSC 52 copies, the external
//! editor) plus OSC 8 hyperlinks over the URLs just drawn. The engine side
//! is wired in elsewhere; this module only needs channels.

use super::app::{App, TerminalRequest};
use super::event::UiEvent;
use super::notify_sink::NotifySink;
use super::render::render;
use super::terminal::{self, LinkCells};
use super::{editor, strings};
use crate::client::Action;
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use std::io::Write;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Set while an external program owns the terminal: the input task stops
/// reading it, so the program gets every key.
static INPUT_PAUSED: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));
/// The input task's answer: it holds no terminal reader.
static INPUT_IDLE: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));
/// How long to wait for the input task to let go of the terminal.
const PAUSE_WAIT: Duration = Duration::from_millis(500);

/// Events applied between two frames at most, so input never starves drawing.
const BATCH: usize = 64;

/// Runs until the App asks to quit or the event channel closes. Actions go
/// to `actions` without waiting (the UI never blocks on the engine).
pub async fn run<B: Backend + Write>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut mpsc::Receiver<UiEvent>,
    actions: &mpsc::UnboundedSender<Action>,
    notifications: Option<&NotifySink>,
) -> Result<(), B::Error> {
    if let Ok(size) = terminal.size() {
        app.size = (size.width, size.height);
    }
    let term = std::env::var("TERM").ok();
    let mut links = LinkMemory::default();
    // Results of work done off this task (image decodes, the opener).
    let (side_tx, mut side_rx) = mpsc::unbounded_channel::<UiEvent>();
    loop {
        let frame = terminal.draw(|f| render(app, f))?;
        let area = frame.area;
        let fresh = if terminal::hyperlinks_wanted(app.markup.hyperlinks, term.as_deref()) {
            links.fresh(app, frame.buffer, area)
        } else {
            Vec::new()
        };
        let on_screen = super::render::images_on_screen(app, area);
        for action in app.fetch_visible_images(&on_screen) {
            let _ = actions.send(action);
        }
        if !fresh.is_empty()
            && let Err(e) = terminal::write_links(terminal.backend_mut(), &fresh)
        {
            tracing::debug!("hyperlinks not written: {e}");
        }
        let first = tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => return Ok(()),
            },
            Some(ev) = side_rx.recv() => ev,
        };
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(ev) = next.take() {
            for action in app.handle_event(ev, Instant::now()) {
                let _ = actions.send(action);
            }
            handled += 1;
            if handled < BATCH {
                next = events.try_recv().ok();
            }
        }
        for job in app.images.jobs.drain(..) {
            let tx = side_tx.clone();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(UiEvent::Image(super::images::decode(job)));
            });
        }
        for n in app.notifications.drain(..) {
            if let Some(sink) = notifications {
                sink.show(&n);
            }
        }
        for req in std::mem::take(&mut app.terminal_requests) {
            match req {
                TerminalRequest::Copy(text) => {
                    let backend = terminal.backend_mut();
                    let written = write!(backend, "{}", terminal::osc52(&text))
                        .and_then(|()| Write::flush(backend));
                    if let Err(e) = written {
                        app.status = Some(strings::copy_failed(&e.to_string()));
                    }
                }
                TerminalRequest::Open(path) => open_detached(&path, side_tx.clone()),
                TerminalRequest::Edit(draft) => {
                    let result = edit_outside(&draft).await;
                    terminal.clear()?;
                    links = LinkMemory::default();
                    app.editor_done(result);
                }
            }
        }
        if app.quit {
            return Ok(());
        }
    }
}

/// Opens `path` with the system's opener in a process group of its own,
/// without waiting for it; whether it worked comes back as
/// [`UiEvent::Opened`].
fn open_detached(path: &std::path::Path, tx: mpsc::UnboundedSender<UiEvent>) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let mut cmd = tokio::process::Command::new(opener);
    cmd.arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    #[cfg(unix)]
    cmd.process_group(0);
    match cmd.spawn() {
        Err(e) => {
            let _ = tx.send(UiEvent::Opened(Err(format!("{opener}: {e}"))));
        }
        Ok(mut child) => {
            tokio::spawn(async move {
                let result = match child.wait().await {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("{opener} failed ({s})")),
                    Err(e) => Err(format!("{opener}: {e}")),
                };
                let _ = tx.send(UiEvent::Opened(result));
            });
        }
    }
}

/// Hands the terminal to the editor on `draft` and takes it back.
async fn edit_outside(draft: &str) -> Result<String, String> {
    let mut idle = INPUT_IDLE.subscribe();
    INPUT_PAUSED.send_replace(true);
    let _ = tokio::time::timeout(PAUSE_WAIT, idle.wait_for(|idle| *idle)).await;
    terminal::restore();
    let result = editor::edit(draft).await;
    let resumed = terminal::resume();
    INPUT_PAUSED.send_replace(false);
    match resumed {
        Ok(()) => result,
        Err(e) => Err(format!("cannot restore the terminal: {e}")),
    }
}

/// The hyperlinks on screen, so each frame writes only new or changed ones
/// (cells ratatui did not redraw keep their link).
#[derive(Default)]
struct LinkMemory {
    area: Rect,
    shown: Vec<LinkCells>,
}

impl LinkMemory {
    /// The links of this frame not already on screen as they are.
    fn fresh(&mut self, app: &App, buf: &Buffer, area: Rect) -> Vec<LinkCells> {
        if area != self.area {
            self.area = area;
            self.shown.clear();
        }
        let underlined = buf
            .content
            .iter()
            .any(|c| c.modifier.contains(Modifier::UNDERLINED));
        let now: Vec<LinkCells> = if underlined {
            super::render::links(app, area)
                .into_iter()
                .map(|(rect, url)| (rect, url, terminal::cells(buf, rect)))
                .collect()
        } else {
            Vec::new()
        };
        let fresh = now
            .iter()
            .filter(|l| !self.shown.contains(l))
            .cloned()
            .collect();
        self.shown = now;
        fresh
    }
}

/// Forwards terminal input and a periodic [`UiEvent::Tick`] into `tx` until
/// the receiver is dropped. Input errors end the input stream quietly; ticks
/// go on.
pub fn spawn_input(tx: mpsc::Sender<UiEvent>, tick: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut input = Some(crossterm::event::EventStream::new());
        let mut paused = INPUT_PAUSED.subscribe();
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut input_open = true;
        loop {
            let ev = tokio::select! {
                ev = next_input(&mut input), if input_open => match ev {
                    Some(Ok(ev)) => UiEvent::Term(ev),
                    _ => {
                        input_open = false;
                        continue;
                    }
                },
                changed = paused.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let pause = *paused.borrow_and_update();
                    input = (!pause).then(crossterm::event::EventStream::new);
                    INPUT_IDLE.send_replace(pause);
                    continue;
                }
                _ = ticker.tick() => UiEvent::Tick,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    })
}

/// The next terminal event; never, while paused.
async fn next_input(
    input: &mut Option<crossterm::event::EventStream>,
) -> Option<std::io::Result<crossterm::event::Event>> {
    match input {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
