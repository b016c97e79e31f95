//! Everything that reaches the App: terminal input, the periodic tick, and
//! model updates sent by the engine to be applied on the UI's own task.

use super::model::Model;
use std::fmt;

/// A change to the [`Model`] computed elsewhere and applied by the UI loop,
/// so the model keeps a single owner.
pub type ModelUpdate = Box<dyn FnOnce(&mut Model) + Send>;

pub enum UiEvent {
    /// Keys, paste, mouse, resize, focus gained/lost.
    Term(crossterm::event::Event),
    /// Periodic wake-up: typing expiry, idle typing stop, notification flush.
    Tick,
    /// Engine-side change to the model.
    Update(ModelUpdate),
}

impl fmt::Debug for UiEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UiEvent::Term(ev) => f.debug_tuple("Term").field(ev).finish(),
            UiEvent::Tick => f.write_str("Tick"),
            UiEvent::Update(_) => f.write_str("Update(..)"),
        }
    }
}

impl From<crossterm::event::Event> for UiEvent {
    fn from(ev: crossterm::event::Event) -> Self {
        UiEvent::Term(ev)
    }
}
