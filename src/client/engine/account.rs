//! The account's own requests: listing and ending device sessions and
//! changing the password. Answers become an [`Update::Sessions`] or a
//! notice; refusals become a notice saying what to do.

use super::{Engine, Pending};
use crate::client::accounts::{password_notice, revoked_notice};
use crate::client::update::Update;
use crate::proto::{OkFrame, Request, RevokedOk, SessionsOk};

/// Which account request an answer belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccountRequest {
    Sessions,
    /// `Some(id)`: one session; `None`: every other one.
    Revoke(Option<String>),
    Password,
}

impl Engine {
    pub(super) fn list_sessions(&mut self) {
        self.account_request(Request::Sessions {}, AccountRequest::Sessions);
    }

    pub(super) fn revoke_session(&mut self, id: Option<String>) {
        let req = Request::RevokeSession {
            session_id: id.clone(),
            others: id.is_none(),
        };
        self.account_request(req, AccountRequest::Revoke(id));
    }

    pub(super) fn change_password(&mut self, old: String, new: String) {
        let req = Request::ChangePassword {
            old_password: old,
            new_password: new,
        };
        self.account_request(req, AccountRequest::Password);
    }

    fn account_request(&mut self, req: Request, what: AccountRequest) {
        if !self.connected {
            self.notice("not connected; try again when the connection is back");
            return;
        }
        self.request(req, Pending::Account(what));
    }

    pub(super) fn on_account_reply(&mut self, what: AccountRequest, ok: OkFrame) {
        match what {
            AccountRequest::Sessions => match ok.parse::<SessionsOk>() {
                Ok(s) => self.dirty.updates.push(Update::Sessions(s.sessions)),
                Err(e) => tracing::warn!("bad sessions reply: {e}"),
            },
            AccountRequest::Revoke(id) => {
                let revoked = ok.parse::<RevokedOk>().map(|r| r.revoked).unwrap_or(0);
                self.notice(revoked_notice(id.as_deref(), revoked));
                self.list_sessions();
            }
            AccountRequest::Password => {
                let revoked = ok.parse::<RevokedOk>().map(|r| r.revoked).unwrap_or(0);
                self.notice(password_notice(revoked));
            }
        }
        self.dirty.now = true;
    }
}
