//! A second handshake on a connection that already has a user is refused.

use super::super::{Outcome, error};
use crate::proto::ProtoError;

/// `register`, `login` or `auth` on a connection that already has a user.
pub(super) fn already_authenticated(id: Option<u64>) -> Outcome {
    Outcome::Reply(error(id, &ProtoError::invalid("already authenticated")))
}
