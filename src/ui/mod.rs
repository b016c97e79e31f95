//! The TUI. The engine fills the [`model::Model`]; the [`app::App`] owns UI
//! state and turns each [`event::UiEvent`] into state changes plus
//! [`Action`]s for the engine; [`render::render`] draws the App,
//! purely. Keys are mapped in [`keys`], slash commands parsed in
//! [`commands`], notifications decided in [`notify`], the terminal set up and
//! restored in [`terminal`], colours in [`theme`], and every user-facing
//! string lives in [`strings`]. [`run`] is the event loop over a channel;
//! [`editor`] runs `$EDITOR` on a draft for it.

pub mod app;
pub mod commands;
pub mod composer;
pub mod editor;
pub mod event;
pub mod fuzzy;
pub mod images;
pub mod keys;
pub mod model;
pub mod notify;
pub mod notify_sink;
pub mod render;
pub mod run;
pub mod start;
pub mod strings;
pub mod terminal;
pub mod theme;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod snapshot_tests_secret;

pub use crate::client::Action;
pub use app::App;
pub use event::UiEvent;
pub use model::Model;
pub use render::render;
