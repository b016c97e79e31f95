//! Everything that reaches the App: terminal input, the periodic tick, and
//! batches of the engine's updates, applied on the UI's own task.

use crate::client::Update;

#[derive(Debug)]
pub enum UiEvent {
    /// Keys, paste, mouse, resize, focus gained/lost.
    Term(crossterm::event::Event),
    /// Periodic wake-up: typing expiry, idle typing stop, notification flush.
    Tick,
    /// What the engine changed, in order.
    Engine(Vec<Update>),
    /// The user clicked the notification of this conversation.
    OpenConversation(String),
    /// An inline image decoded off the UI thread.
    Image(super::images::Decoded),
    /// The system's opener ran (or could not).
    Opened(Result<(), String>),
}

impl From<crossterm::event::Event> for UiEvent {
    fn from(ev: crossterm::event::Event) -> Self {
        UiEvent::Term(ev)
    }
}

impl From<Vec<Update>> for UiEvent {
    fn from(batch: Vec<Update>) -> Self {
        UiEvent::Engine(batch)
    }
}
