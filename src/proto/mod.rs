//! The wire protocol both sides share: frames, the data model, error codes
//! and limits. `docs/PROTOCOL.md` is the prose reference for everything here.

mod error;
mod event_de;
mod frames;
pub mod keys;
mod limits;
pub mod search;
mod span;
mod types;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod search_tests;

pub use error::{ErrorCode, ProtoError};
pub use frames::*;
pub use keys::{DeviceRef, Encrypted, ToDeviceMessage};
pub use limits::{ByteBudget, Limits, PROTOCOL_VERSION, valid_username};
pub use span::parse_span;
pub use types::*;
