//! The UI loop, generic over the backend and fed by one channel of
//! [`UiEvent`]s: draw, wait for an event, apply it (and any others already
//! queued), hand the resulting actions to the engine, show notifications.
//! The engine side is wired in elsewhere; this module only needs channels.

use super::app::App;
use super::event::UiEvent;
use super::notify_sink::NotifySink;
use super::render::render;
use crate::client::Action;
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::Backend;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events applied between two frames at most, so input never starves drawing.
const BATCH: usize = 64;

/// Runs until the App asks to quit or the event channel closes. Actions go
/// to `actions` without waiting (the UI never blocks on the engine).
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut mpsc::Receiver<UiEvent>,
    actions: &mpsc::UnboundedSender<Action>,
    notifications: Option<&NotifySink>,
) -> Result<(), B::Error> {
    if let Ok(size) = terminal.size() {
        app.size = (size.width, size.height);
    }
    loop {
        terminal.draw(|f| render(app, f))?;
        let Some(first) = events.recv().await else {
            return Ok(());
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
        for n in app.notifications.drain(..) {
            if let Some(sink) = notifications {
                sink.show(&n);
            }
        }
        if app.quit {
            return Ok(());
        }
    }
}

/// Forwards terminal input and a periodic [`UiEvent::Tick`] into `tx` until
/// the receiver is dropped. Input errors end the input stream quietly; ticks
/// go on.
pub fn spawn_input(tx: mpsc::Sender<UiEvent>, tick: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut input = crossterm::event::EventStream::new();
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut input_open = true;
        loop {
            let ev = tokio::select! {
                ev = input.next(), if input_open => match ev {
                    Some(Ok(ev)) => UiEvent::Term(ev),
                    _ => {
                        input_open = false;
                        continue;
                    }
                },
                _ = ticker.tick() => UiEvent::Tick,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    })
}
